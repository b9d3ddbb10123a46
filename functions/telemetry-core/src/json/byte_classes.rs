//! Classes of bytes, found many at a time. Mainly the bytes that end a
//! plain run inside a JSON string (`"`, `\` and control characters):
//! sixteen bytes at a time with the vector unit every x86_64 (SSE2) and
//! aarch64 (NEON) CPU has, eight at a time elsewhere and for the last
//! partial block. Also whether a name is all printable ASCII, eight bytes
//! at a time, for the validation of metric and dimension names.

pub(crate) const BLOCK: usize = 16;

/// Position of the first `"`, `\` or control character at or after `pos`.
#[inline]
pub(crate) fn next_special(bytes: &[u8], mut pos: usize) -> Option<usize> {
    while let Some(block) = bytes.get(pos..pos + BLOCK) {
        if let Some(found) = first_special_in_block(block.try_into().unwrap_or(&[0; BLOCK])) {
            return Some(pos + found);
        }
        pos += BLOCK;
    }
    next_special_in_words(bytes, pos)
}

/// Appends the plain bytes from `pos` up to the next special byte to `out`
/// and returns that byte's position. Whole blocks are copied before they
/// are searched and the surplus cut off afterwards: a fixed-size copy is
/// cheaper than a call sized by the search.
#[inline]
pub(crate) fn copy_until_special(bytes: &[u8], mut pos: usize, out: &mut Vec<u8>) -> Option<usize> {
    while let Some(block) = bytes.get(pos..pos + BLOCK) {
        let block: &[u8; BLOCK] = block.try_into().unwrap_or(&[0; BLOCK]);
        let copied_to = out.len();
        out.extend_from_slice(block);
        if let Some(found) = first_special_in_block(block) {
            out.truncate(copied_to + found);
            return Some(pos + found);
        }
        pos += BLOCK;
    }
    let found = next_special_in_words(bytes, pos);
    out.extend_from_slice(&bytes[pos.min(bytes.len())..found.unwrap_or(bytes.len())]);
    found
}

/// The special bytes of one block as a bit mask: [`SpecialMask::BITS`]
/// bits per byte, the block's first byte lowest. Walking one mask finds
/// every special byte of the block without searching it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpecialMask(u64);

impl SpecialMask {
    /// x86_64's `movemask` gives one bit per byte, aarch64's narrowing
    /// shift four.
    const BITS: usize = if cfg!(target_arch = "aarch64") { 4 } else { 1 };

    /// Offset of the first special byte left in the block.
    #[inline]
    pub fn first(self) -> Option<usize> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as usize / Self::BITS)
    }

    /// The mask without the bytes before `offset` (less than [`BLOCK`]).
    #[inline]
    pub fn skipping_to(self, offset: usize) -> Self {
        SpecialMask(self.0 & (u64::MAX << (offset * Self::BITS)))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn of(block: &[u8; BLOCK]) -> Self {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is part of the x86_64 baseline, and the unaligned
        // load reads exactly the 16 bytes of `block`.
        let mask = unsafe {
            let bytes = _mm_loadu_si128(block.as_ptr().cast());
            // An unsigned byte is <= 0x1f exactly when min(byte, 0x1f) == byte.
            let control = _mm_cmpeq_epi8(_mm_min_epu8(bytes, _mm_set1_epi8(0x1f)), bytes);
            let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
            _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
        };
        SpecialMask(u64::from(mask))
    }

    #[cfg(target_arch = "aarch64")]
    #[inline]
    pub fn of(block: &[u8; BLOCK]) -> Self {
        use std::arch::aarch64::*;
        // SAFETY: NEON is part of the aarch64 baseline, and the load reads
        // exactly the 16 bytes of `block`.
        let mask = unsafe {
            let bytes = vld1q_u8(block.as_ptr());
            let special = vorrq_u8(
                vorrq_u8(
                    vceqq_u8(bytes, vdupq_n_u8(b'"')),
                    vceqq_u8(bytes, vdupq_n_u8(b'\\')),
                ),
                vcltq_u8(bytes, vdupq_n_u8(0x20)),
            );
            // A narrowing shift leaves four bits per byte in one 64-bit word.
            let nibbles = vshrn_n_u16::<4>(vreinterpretq_u16_u8(special));
            vget_lane_u64::<0>(vreinterpret_u64_u8(nibbles))
        };
        SpecialMask(mask)
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    #[inline]
    pub fn of(block: &[u8; BLOCK]) -> Self {
        SpecialMask(block.iter().enumerate().fold(0, |mask, (offset, &byte)| {
            mask | (u64::from(byte == b'"' || byte == b'\\' || byte < 0x20) << offset)
        }))
    }
}

/// Index of the first special byte in `block`.
#[inline]
fn first_special_in_block(block: &[u8; BLOCK]) -> Option<usize> {
    SpecialMask::of(block).first()
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// [`next_special`] eight bytes at a time, then byte by byte.
#[inline]
fn next_special_in_words(bytes: &[u8], mut pos: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // Bytes that are zero (in `quote`/`backslash`) or below 0x20: the
        // lowest flagged byte is always a real match (borrows only carry up).
        let found = (quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash
            | word.wrapping_sub(ONES * 0x20) & !word)
            & HIGHS;
        if found != 0 {
            return Some(pos + (found.trailing_zeros() / 8) as usize);
        }
        pos += 8;
    }
    bytes[pos.min(bytes.len())..]
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\' || byte < 0x20)
        .map(|offset| pos + offset)
}

/// Whether every byte is in 0x20..=0x7e, eight bytes at a time (the last
/// word overlaps the one before it rather than ending byte by byte).
pub(crate) fn printable_ascii(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.iter().all(|byte| (0x20..0x7f).contains(byte));
    }
    let word_at =
        |pos: usize| u64::from_le_bytes(bytes[pos..pos + 8].try_into().unwrap_or_default());
    let mut unprintable = 0;
    let mut pos = 0;
    while pos + 8 < bytes.len() {
        unprintable |= unprintable_bytes(word_at(pos));
        pos += 8;
    }
    unprintable |= unprintable_bytes(word_at(bytes.len() - 8));
    unprintable == 0
}

/// Non-zero when `word` holds a byte >= 0x80, < 0x20 or 0x7f. Borrows only
/// carry upwards, so the lowest offending byte is always flagged.
#[inline]
fn unprintable_bytes(word: u64) -> u64 {
    let delete = word ^ (ONES * 0x7f);
    (word | word.wrapping_sub(ONES * 0x20) | delete.wrapping_sub(ONES) & !delete) & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_special(byte: u8) -> bool {
        byte == b'"' || byte == b'\\' || byte < 0x20
    }

    #[test]
    fn special_bytes_are_found_in_every_position() {
        for length in 0..40 {
            for special in [b'"', b'\\', b'\n', 0x00, 0x1f] {
                let mut bytes = vec![b'a'; length + 24];
                bytes[length] = special;
                bytes[length + 5] = b'"';
                for start in 0..=length {
                    assert_eq!(next_special(&bytes, start), Some(length));
                    let mut out = b"kept".to_vec();
                    assert_eq!(copy_until_special(&bytes, start, &mut out), Some(length));
                    assert_eq!(out[4..], bytes[start..length]);
                    assert_eq!(&out[..4], b"kept");
                }
            }
            assert_eq!(next_special(&vec![0xC3; length], 0), None);
            // Bytes next to the special ones are not special.
            for plain in [b'!', b'#', b'[', b']', b' ', 0x7f, 0x80, 0xff] {
                let bytes = vec![plain; length];
                assert_eq!(next_special(&bytes, 0), None);
                let mut out = Vec::new();
                assert_eq!(copy_until_special(&bytes, 0, &mut out), None);
                assert_eq!(out, bytes);
            }
        }
    }

    #[test]
    fn a_mask_walks_every_special_byte_of_its_block_in_order() {
        let mut block = [b'a'; BLOCK];
        for (offset, byte) in [(0, b'"'), (3, b'\\'), (4, b'"'), (9, 0x01), (15, b'\\')] {
            block[offset] = byte;
        }
        let mask = SpecialMask::of(&block);
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(offset) = mask.skipping_to(from).first() {
            found.push(offset);
            from = offset + 1;
            if from == BLOCK {
                break;
            }
        }
        assert_eq!(found, [0, 3, 4, 9, 15]);
        assert_eq!(mask.skipping_to(5).first(), Some(9));
        assert_eq!(SpecialMask::of(&[b'a'; BLOCK]).first(), None);
    }

    #[test]
    fn printable_ascii_matches_a_byte_by_byte_check_for_every_byte_in_every_position() {
        for length in 1..40 {
            for position in 0..length {
                for byte in 0..=255u8 {
                    let mut bytes = vec![b'a'; length];
                    bytes[position] = byte;
                    assert_eq!(
                        printable_ascii(&bytes),
                        (0x20..=0x7e).contains(&byte),
                        "{byte:#x} at {position} of {length}"
                    );
                }
            }
        }
        assert!(printable_ascii(b""));
        assert!(printable_ascii(&[b' '; 33]));
        assert!(printable_ascii(&[b'~'; 33]));
    }

    #[test]
    fn every_byte_value_is_classified_in_every_lane() {
        for byte in 0..=255u8 {
            for lane in 0..BLOCK {
                let mut block = [b'a'; BLOCK];
                block[lane] = byte;
                let expected = is_special(byte).then_some(lane);
                assert_eq!(first_special_in_block(&block), expected, "{byte:#x}");
                assert_eq!(next_special_in_words(&block, 0), expected, "{byte:#x}");
            }
        }
    }
}
