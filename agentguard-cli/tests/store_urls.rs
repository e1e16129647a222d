//! A database password given in `--store` is never printed, whatever the spelling of the URL.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_agentguard");

#[test]
fn a_store_password_is_never_printed_in_any_spelling_of_the_url() {
    for url in [
        // Unreachable (port 1): the connection error is printed with the URL.
        "postgres://app:S3cr3tPw@127.0.0.1:1/db?sslrootcert=/ca.pem",
        "Postgres://app:S3cr3tPw@127.0.0.1:1/db",
        "POSTGRESQL://app:S3cr3tPw@127.0.0.1:1/db",
        "postgres://app@127.0.0.1:1/db?password=S3cr3tPw",
        "postgres://app@127.0.0.1:1/db?PASSWORD=S3cr3tPw&sslmode=disable",
        // Misspelled: refused as bad usage, still masked.
        "postgres:/app:S3cr3tPw@127.0.0.1:1/db",
        "postgres:app:S3cr3tPw@127.0.0.1:1/db",
        "mysql://app:S3cr3tPw@127.0.0.1:1/db",
        // A keyword/value connection string, a password holding `?`, `@` or `:`.
        "host=127.0.0.1 port=1 password=S3cr3tPw",
        "host=127.0.0.1 password=ab:S3cr3tPw",
        "postgres://app:pa?S3cr3tPw@127.0.0.1:1/db",
        "postgres://app:S3cr3tPw@x@127.0.0.1:1/db",
    ] {
        for args in [&["pending"][..], &["audit", "verify"][..]] {
            let out = Command::new(BIN)
                .args(["--store", url])
                .args(args)
                .env_remove("AGENTGUARD_STORE")
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!out.status.success(), "{url} {args:?}: {all}");
            assert!(!all.contains("S3cr3tPw"), "{url} {args:?} printed the password: {all}");
        }
    }
}
