//! Test certificates made with `openssl`, for the TLS-only PostgreSQL server.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A test CA, a server certificate it signed for `localhost` only (not
/// `127.0.0.1`), and a second CA that signed nothing, made by `openssl`.
pub struct TestCertificates {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_certificate: PathBuf,
    pub server_key: PathBuf,
}

impl TestCertificates {
    pub fn generate(directory: &Path) -> TestCertificates {
        std::fs::create_dir_all(directory).unwrap();
        let openssl = |args: &[&str]| {
            let args: Vec<&std::ffi::OsStr> = args.iter().map(|arg| arg.as_ref()).collect();
            openssl_in(directory, &args)
        };
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, subject) in [
            ("ca", "/CN=iotpipe test CA"),
            ("other-ca", "/CN=someone else"),
        ] {
            let (key, certificate) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
            args.extend(p256);
            args.extend(["-keyout", &key, "-out", &certificate]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&args);
        }
        let mut request = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key"];
        request.extend(p256);
        request.extend(["-out", "server.csr"]);
        openssl(&request);
        std::fs::write(
            directory.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        TestCertificates {
            ca: directory.join("ca.pem"),
            other_ca: directory.join("other-ca.pem"),
            server_certificate: directory.join("server.pem"),
            server_key: directory.join("server.key"),
        }
    }
}

impl TestCertificates {
    /// A client certificate and key for `name`, signed by the test CA (a
    /// device's credentials for a TLS broker); returns (certificate, key).
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let directory = self.ca.parent().expect("the CA sits in a directory");
        let (key, request) = signing_request(directory, name);
        let certificate = directory.join(format!("{name}.pem"));
        // Extensions make it X.509 v3, which TLS clients require.
        let extensions = directory.join(format!("{name}.ext"));
        std::fs::write(
            &extensions,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        let ca_key = directory.join("ca.key");
        openssl(&[
            "x509".as_ref(),
            "-req".as_ref(),
            "-in".as_ref(),
            request.as_os_str(),
            "-CA".as_ref(),
            self.ca.as_os_str(),
            "-CAkey".as_ref(),
            ca_key.as_os_str(),
            "-CAcreateserial".as_ref(),
            "-days".as_ref(),
            "2".as_ref(),
            "-extfile".as_ref(),
            extensions.as_os_str(),
            "-out".as_ref(),
            certificate.as_os_str(),
        ]);
        (certificate, key)
    }
}

/// A new P-256 key and a certificate signing request for `/CN=<name>` in
/// `directory` (a device that keeps its key); returns (key, request).
pub fn signing_request(directory: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, request) = (
        directory.join(format!("{name}.key")),
        directory.join(format!("{name}.csr")),
    );
    let subject = format!("/CN={name}");
    openssl(&[
        "req".as_ref(),
        "-new".as_ref(),
        "-newkey".as_ref(),
        "ec".as_ref(),
        "-pkeyopt".as_ref(),
        "ec_paramgen_curve:prime256v1".as_ref(),
        "-nodes".as_ref(),
        "-subj".as_ref(),
        subject.as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        request.as_os_str(),
    ]);
    (key, request)
}

fn openssl(args: &[&std::ffi::OsStr]) {
    openssl_in(Path::new("."), args)
}

fn openssl_in(directory: &Path, args: &[&std::ffi::OsStr]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(directory)
        .output()
        .expect("openssl runs (Debian's openssl package)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
