//! Files holding session keys are the owner's alone: the real binary under umask 022
//! creates its database, `-wal`, `-shm`, lock file, backups and restored databases 0600
//! and its folders 0700, tightens a database an older version left 0644, and `check`
//! and `serve` warn about a configuration file or `_FILE` secret every user can read.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use wxlogin::fake_wechat::{FakeOptions, FakeWeChat};

use crate::support::*;

/// The binary with `args`, under the usual shell umask 022 whatever the test process has.
fn under_umask_022(args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg("umask 022; exec \"$@\"").arg("sh").arg(bin()).args(args);
    cmd.env("WXLOGIN_SECRET_MAIN", SECRET).env("RUST_LOG", "info");
    cmd
}

/// `serve` under umask 022, stderr to `log`; returns once it listens.
fn serve(config: &Path, log: &Path) -> (Running, String) {
    let mut child = under_umask_022(&["serve", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => match line.strip_prefix("listening on http://") {
                Some(a) => break a.trim().to_string(),
                None => continue,
            },
            _ => panic!("serve exited before listening: {}", std::fs::read_to_string(log).unwrap_or_default()),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Running::from(child), format!("http://{addr}"))
}

/// Runs an admin command under umask 022; asserts it succeeds.
fn admin(args: &[&str]) -> String {
    let out = under_umask_022(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

fn login(fake: &FakeWeChat, base: &str, user: &str) {
    let code = fake.login_code(APPID, user);
    let r = send(&format!("{base}/v1/login"), "POST", None, Some(json!({"code": code}).to_string()), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
}

/// Every file in `dir` is 0600, and the ones that must be there are.
fn assert_all_private(dir: &Path, must_exist: &[&str]) {
    for name in must_exist {
        assert!(dir.join(name).exists(), "{name} is missing from {}", dir.display());
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{} is {:03o}", path.display(), mode(&path));
    }
}

fn fake() -> FakeWeChat {
    FakeWeChat::start(
        "127.0.0.1:0",
        FakeOptions { apps: vec![(APPID.into(), SECRET.into())], ..FakeOptions::default() },
    )
    .unwrap()
}

#[test]
fn every_file_written_under_umask_022_is_the_owners_alone() {
    let fake = fake();
    let dir = TempDir::new("modes");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let cfg = config.to_str().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");

    let (mut child, base) = serve(&config, &log);
    login(&fake, &base, "ann");
    assert_eq!(mode(&data) & 0o077, 0, "the data folder is {:03o}", mode(&data));
    assert_all_private(&data, &["wxlogin.db", "wxlogin.db-wal", "wxlogin.db-shm", "wxlogin.db.lock"]);

    // A backup taken while the server runs.
    let backup = dir.path().join("backup.db");
    admin(&["backup", "--config", cfg, backup.to_str().unwrap()]);
    assert_eq!(mode(&backup), 0o600, "the backup is {:03o}", mode(&backup));
    // Into a folder of its own, so that no file but the backup can be there.
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    admin(&["backup", "--config", cfg, backups.join("b.db").to_str().unwrap()]);
    assert_all_private(&backups, &["b.db"]);

    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
    let text = admin(&["restore", "--config", cfg, backup.to_str().unwrap()]);
    assert!(text.contains("restored"), "{text}");
    assert_all_private(&data, &["wxlogin.db", "wxlogin.db.lock"]);

    // The restored database in use: its new -wal and -shm too.
    let (mut child, base) = serve(&config, &log);
    login(&fake, &base, "ben");
    assert_all_private(&data, &["wxlogin.db", "wxlogin.db-wal", "wxlogin.db-shm", "wxlogin.db.lock"]);
    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
    assert_eq!(openids(&data.join("wxlogin.db")).len(), 2);
}

#[test]
fn a_database_left_open_by_an_older_version_is_tightened_at_start() {
    let fake = fake();
    let dir = TempDir::new("tighten");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let db = dir.path().join("data/wxlogin.db");
    let log = dir.path().join("serve.log");
    let (mut child, base) = serve(&config, &log);
    login(&fake, &base, "ann");
    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
    for file in [db.clone(), dir.path().join("data/wxlogin.db.lock")] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    let (mut child, base) = serve(&config, &log);
    login(&fake, &base, "ben");
    assert_all_private(
        &dir.path().join("data"),
        &["wxlogin.db", "wxlogin.db-wal", "wxlogin.db-shm", "wxlogin.db.lock"],
    );
    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<_> = text.lines().filter(|l| l.contains("made it 0600")).collect();
    assert_eq!(warnings.len(), 1, "one warning, naming the database:\n{text}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains(&db.display().to_string()), "{}", warnings[0]);
}

#[test]
fn check_and_serve_warn_about_secret_files_every_user_can_read() {
    let fake = fake();
    let dir = TempDir::new("warn");
    let config = write_config(dir.path(), &fake.base_url(), "");
    let cfg = config.to_str().unwrap();
    let secret_file = dir.path().join("secret.txt");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let check = |envs: &[(&str, &str)]| {
        let out = Command::new(bin()).args(["check", "--config", cfg]).envs(envs.iter().copied()).output().unwrap();
        assert!(out.status.success(), "a warning is not a failure: {out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let file_env = [("WXLOGIN_SECRET_MAIN_FILE", secret_file.to_str().unwrap())];

    for (path, m) in [(&config, 0o644), (&secret_file, 0o604)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let out = check(&file_env);
    let warning = |what: &str, path: &Path, m: &str| {
        format!("warning: {what} {} is readable by every user (mode {m}); chmod 600 it", path.display())
    };
    assert!(out.contains(&warning("the configuration file", &config, "644")), "{out}");
    assert!(out.contains(&warning("the secret file", &secret_file, "604")), "{out}");
    assert!(!out.contains(SECRET), "{out}");

    // serve says the same in its log.
    let log = dir.path().join("serve.log");
    let (mut child, _) = spawn_listening(&["serve", "--config", cfg], &file_env, &log);
    assert!(sigterm_and_wait(&mut child, Duration::from_secs(10)).success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("WARN") && text.contains(&format!("the configuration file {}", config.display())), "{text}");
    assert!(text.contains(&format!("the secret file {}", secret_file.display())), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // Private files, or shared with a group only (deploy/README.md's root:wxlogin 0640):
    // no warning.
    for (path, m) in [(&config, 0o640), (&secret_file, 0o600)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let out = check(&file_env);
    assert!(!out.contains("warning"), "{out}");
    let out = check(&[("WXLOGIN_SECRET_MAIN", SECRET)]);
    assert!(!out.contains("warning"), "{out}");
}
