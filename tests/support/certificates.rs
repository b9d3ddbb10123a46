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
        let (key, request, certificate) = (
            directory.join(format!("{name}.key")),
            directory.join(format!("{name}.csr")),
            directory.join(format!("{name}.pem")),
        );
        let run = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl runs");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let text = |path: &Path| path.to_str().unwrap().to_owned();
        run(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &text(&key),
            "-out",
            &text(&request),
        ]);
        let ca_key = directory.join("ca.key");
        // Extensions make it X.509 v3, which TLS clients require.
        let extensions = directory.join(format!("{name}.ext"));
        std::fs::write(
            &extensions,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &text(&request),
            "-CA",
            &text(&self.ca),
            "-CAkey",
            &text(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &text(&extensions),
            "-out",
            &text(&certificate),
        ]);
        (certificate, key)
    }
}
