//! Test certificates, made with the `openssl` command in a temporary directory: CAs, and
//! certificates they sign (EC P-256, valid two days). Files are `<name>.pem` and `<name>.key`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

/// A server certificate for 127.0.0.1 (and `localhost`).
pub const SERVER: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n";
/// A client certificate, for mutual TLS.
pub const CLIENT: &str = "extendedKeyUsage=clientAuth\n";

const EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A directory of test CAs and certificates; removed when dropped.
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// An empty directory.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    /// The path of a file in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// A self-signed CA `ca` (`ca.pem`, `ca.key`), subject `/CN=test-<ca>`.
    pub fn authority(&self, ca: &str) -> &Self {
        let (key, pem, subject) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=test-{ca}"));
        self.openssl(
            &[&["req", "-x509"], &EC_KEY[..], &["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject]]
                .concat(),
        );
        self
    }

    /// A certificate `name` for `subject` signed by CA `ca`, with `extensions` (e.g. [`SERVER`]).
    pub fn issue(&self, ca: &str, name: &str, subject: &str, extensions: &str) -> &Self {
        let (key, csr, pem, ext) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        self.openssl(&[&["req"], &EC_KEY[..], &["-keyout", &key, "-out", &csr, "-subj", subject]].concat());
        std::fs::write(self.path(&ext), format!("basicConstraints=CA:FALSE\n{extensions}")).expect("ext");
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        self
    }

    fn openssl(&self, arguments: &[&str]) {
        let output =
            Command::new("openssl").args(arguments).current_dir(self.dir.path()).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
