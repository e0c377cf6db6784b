//! `eventfold token` as a user runs it: the key pair it creates, the tokens it prints (checked by
//! the same authenticator the services use) and its one-line refusals.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use eventfold_auth::{AuthSettings, Authenticator, JwksSource, JwtSettings, scope};

fn eventfold(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventfold"));
    for var in [
        "AUTH_ISSUER_KEY_FILE",
        "AUTH_ISSUER",
        "AUTH_AUDIENCE",
        "EVENTFOLD_CACHE",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.args(args).output().expect("run eventfold")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim_end().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_creates_the_key_pair_in_the_cache_and_prints_the_key_set_path() {
    let cache = tempfile::tempdir().unwrap();
    let o = eventfold(&["token", "init"], &[("EVENTFOLD_CACHE", cache.path())]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let jwks = cache.path().join("auth/jwks.json");
    assert_eq!(stdout(&o), jwks.display().to_string());
    assert!(jwks.is_file());
    let key = cache.path().join("auth/issuer.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).unwrap();
    let again = eventfold(&["token", "init"], &[("EVENTFOLD_CACHE", cache.path())]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "init keeps an existing key"
    );
}

#[tokio::test]
async fn a_printed_token_is_accepted_by_the_services_authenticator() {
    let dir = tempfile::tempdir().unwrap();
    let o = eventfold(
        &["token", "init", "--dir", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let key = dir.path().join("issuer.pem");
    let o = eventfold(
        &[
            "token",
            "--tenant",
            "acme",
            "--scope",
            "all",
            "--sub",
            "ci-bot",
            "--actor-kind",
            "agent",
            "--ttl",
            "120",
        ],
        &[("AUTH_ISSUER_KEY_FILE", &key)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let token = stdout(&o);
    assert_eq!(token.lines().count(), 1);

    let auth = Authenticator::new(AuthSettings::jwt(JwtSettings::new(
        JwksSource::File(dir.path().join("jwks.json")),
        "eventfold-local",
        "eventfold",
    )))
    .unwrap();
    let p = auth.verify(&token).await.unwrap();
    assert_eq!(
        (p.subject.as_str(), p.tenant.as_str(), p.actor_kind.as_str()),
        ("ci-bot", "acme", "agent")
    );
    for s in [
        scope::COMMANDS_WRITE,
        scope::EVENTS_READ,
        scope::READ_MODELS_READ,
        scope::ADMIN,
    ] {
        assert!(p.has(s), "{s}");
    }
    assert!(!p.has(scope::IMPERSONATE));
}

#[test]
fn bad_arguments_get_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let init = eventfold(
        &["token", "init", "--dir", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(init.status.code(), Some(0));
    let key = dir.path().join("issuer.pem");
    let absent = dir.path().join("absent.pem");
    for (args, key_file) in [
        (&["token"][..], &key),
        (&["token", "--tenant", "acme"], &key),
        (&["token", "--scope", "all"], &key),
        (
            &["token", "--tenant", "acme", "--scope", "events:write"],
            &key,
        ),
        (
            &[
                "token",
                "--tenant",
                "acme",
                "--scope",
                "all",
                "--actor-kind",
                "robot",
            ],
            &key,
        ),
        (
            &["token", "--tenant", "acme", "--scope", "all", "--ttl", "0"],
            &key,
        ),
        (&["token", "init", "--tenant", "acme"], &key),
        (&["token", "--tenant", "a b", "--scope", "all"], &key),
        (&["token", "--tenant", "acme", "--scope", "all"], &absent),
    ] {
        let o = eventfold(args, &[("AUTH_ISSUER_KEY_FILE", key_file)]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).trim_end().lines().count(), 1, "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}
