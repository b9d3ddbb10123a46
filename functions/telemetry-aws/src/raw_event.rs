//! Runs a Lambda handler on the event's bytes exactly as the Runtime API
//! sent them.
//!
//! `lambda_runtime` deserialises every event with serde_json (through
//! serde_path_to_error, which records the path of every key it reads) into a
//! type that must own its data. Our envelope parser reads the bytes itself,
//! borrowing from them, so that step would only add a second, slower scan of
//! the event and a copy of every message. A layer takes the body before that
//! step and leaves `null` in its place.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use lambda_runtime::layers::TracingLayer;
use lambda_runtime::tower::{Layer, Service};
use lambda_runtime::{
    service_fn, Context, Diagnostic, Error, LambdaEvent, LambdaInvocation, Runtime,
};
use serde_json::Value;
use telemetry_core::outcome::{Counts, Response, RetryLater};

/// Polls the Runtime API and calls `handler(event bytes, context)` for each
/// invocation, with the same tracing set-up as `lambda_runtime::run`.
pub async fn run<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(Bytes, Context) -> Fut,
    Fut: Future<Output = Result<Value, Diagnostic>>,
{
    keep_freed_memory_for_the_next_invocation();
    let bodies = TakenBody::default();
    let taken = bodies.clone();
    let service = service_fn(move |event: LambdaEvent<()>| {
        let invocation = taken
            .take(&event.context.request_id)
            .map(|body| handler(body, event.context));
        async move {
            match invocation {
                Some(invocation) => invocation.await,
                None => Err(Diagnostic {
                    error_type: "Runtime.EventBodyMissing".into(),
                    error_message: "the event body was not handed over by the runtime layer".into(),
                }),
            }
        }
    });
    Runtime::new(service)
        .layer(TakeBody(bodies))
        .layer(TracingLayer::new())
        .run()
        .await
}

/// The invocation's answer to the Runtime API: the trigger's response, or
/// an error whose `errorType` says the messages were not delivered (the
/// trigger then retries the invocation).
pub fn to_runtime_answer(outcome: Result<Response, RetryLater>) -> Result<Value, Diagnostic> {
    match outcome {
        Ok(response) => Ok(response.to_json()),
        Err(retry) => Err(Diagnostic {
            error_type: RetryLater::ERROR_TYPE.into(),
            error_message: retry.to_string(),
        }),
    }
}

/// The function's clock, in epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// When Lambda stops the invocation (the context's deadline), in epoch ms.
/// `None` for a value that is no such time: `cargo lambda watch` sends the
/// timeout's length (600000) where Lambda sends a point in time.
pub fn deadline_ms(context: &Context) -> Option<i64> {
    /// 2000-01-01T00:00:00Z: any real deadline is later.
    const EARLIEST_DEADLINE_MS: i64 = 946_684_800_000;
    i64::try_from(context.deadline)
        .ok()
        .filter(|deadline| *deadline > EARLIEST_DEADLINE_MS)
}

/// The counts of an invocation, whichever way it ended.
pub fn counts_of(outcome: &Result<(Response, Counts), RetryLater>) -> &Counts {
    match outcome {
        Ok((_, counts)) => counts,
        Err(retry) => &retry.counts,
    }
}

/// A warm invocation allocates what the last one freed: a 6 MB event, a
/// batch of readings, megabytes of EMF. glibc would map the largest of these
/// afresh and unmap them again each time, or trim the heap after them, so
/// every invocation faulted thousands of new pages in. With fixed limits
/// above any invocation's needs, freed memory stays in the heap for the next
/// one; peak memory is what the largest invocation needed anyway.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory_for_the_next_invocation() {
    // SAFETY: mallopt only sets allocator parameters (under the allocator's
    // own lock); both values are within glibc's documented ranges.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory_for_the_next_invocation() {}

/// The body of the invocation in progress, keyed by its request id.
/// Invocations run one at a time (`Runtime::run`), so one slot is enough.
#[derive(Clone, Default)]
struct TakenBody(Arc<Mutex<Option<(String, Bytes)>>>);

impl TakenBody {
    fn put(&self, request_id: String, body: Bytes) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((request_id, body));
    }

    fn take(&self, request_id: &str) -> Option<Bytes> {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.take() {
            Some((id, body)) if id == request_id => Some(body),
            _ => None,
        }
    }
}

struct TakeBody(TakenBody);

impl<S> Layer<S> for TakeBody {
    type Service = TakeBodyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TakeBodyService {
            inner,
            bodies: self.0.clone(),
        }
    }
}

struct TakeBodyService<S> {
    inner: S,
    bodies: TakenBody,
}

impl<S: Service<LambdaInvocation>> Service<LambdaInvocation> for TakeBodyService<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut invocation: LambdaInvocation) -> Self::Future {
        let body = std::mem::replace(&mut invocation.body, Bytes::from_static(b"null"));
        self.bodies.put(invocation.context.request_id.clone(), body);
        self.inner.call(invocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_point_in_time_is_a_deadline() {
        let mut context = Context::default();
        context.deadline = 1_796_170_132_995;
        assert_eq!(deadline_ms(&context), Some(1_796_170_132_995));
        // What `cargo lambda watch` sends: the timeout, not a time.
        context.deadline = 600_000;
        assert_eq!(deadline_ms(&context), None);
    }

    #[test]
    fn a_body_is_handed_over_once_and_only_to_its_invocation() {
        let bodies = TakenBody::default();
        bodies.put("a".into(), Bytes::from_static(b"{}"));
        assert_eq!(bodies.take("b"), None);
        bodies.put("a".into(), Bytes::from_static(b"{}"));
        assert_eq!(bodies.take("a").as_deref(), Some(&b"{}"[..]));
        assert_eq!(bodies.take("a"), None);
    }
}
