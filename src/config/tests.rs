use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[[apps]]
name = "main"
appid = "wx4f4bc4dec97d474b"
secret = "s3cret"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_err(text: &str) -> String {
    parse(text, Path::new("/etc/wxlogin"), &no_env).unwrap_err().to_string()
}

#[test]
fn minimal_file_gets_every_default() {
    let c = parse(MINIMAL, Path::new("/etc/wxlogin"), &no_env).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.server.workers, 0);
    assert!(c.server.local_workers() >= 4);
    assert_eq!(c.server.wechat_workers, 64);
    assert_eq!(c.server.max_body_bytes, 65536);
    assert_eq!(c.server.max_connections_per_ip, 64);
    assert!(!c.server.metrics_public && !c.server.trust_forwarded_for);
    assert_eq!(c.database.path, Path::new("/etc/wxlogin/data/wxlogin.db"));
    assert_eq!(c.session.ttl_seconds, 2_592_000);
    assert!(c.session.sliding && c.session.expose_openid);
    assert_eq!(c.session.max_lifetime_seconds, 7_776_000);
    assert_eq!(c.session.code_replay_seconds, 60);
    assert_eq!(c.session.max_per_user, 50);
    assert_eq!(c.wechat.api_base, "https://api.weixin.qq.com");
    assert_eq!((c.wechat.timeout_ms, c.wechat.retries), (5000, 2));
    assert_eq!(c.wechat.token_api, TokenApi::Stable);
    assert_eq!(c.decrypt.max_age_seconds, 0);
    assert_eq!(c.rate_limit.login_per_ip_per_minute, 30);
    assert_eq!(c.rate_limit.phone_per_user_per_hour, 10);
    assert!(c.internal.api_keys.is_empty());
    assert_eq!(c.apps[0].secret.expose(), "s3cret");
}

#[test]
fn the_shipped_example_parses() {
    let text = include_str!("../../appliance.toml");
    let env = |k: &str| (k == "WXLOGIN_SECRET_MAIN").then(|| "x".to_string());
    parse(text, Path::new("."), &env).unwrap();
}

#[test]
fn unknown_key_names_its_path() {
    let e = parse_err(&format!("[server]\nworkrs = 4\n{MINIMAL}"));
    assert!(e.starts_with("server.workrs: unknown field `workrs`"), "{e}");
    let e = parse_err(&format!("{MINIMAL}colour = \"red\"\n"));
    assert!(e.starts_with("apps[0].colour: unknown field"), "{e}");
    let e = parse_err(&format!("[databse]\npath = \"x\"\n{MINIMAL}"));
    assert!(e.starts_with("databse: unknown field"), "{e}");
}

#[test]
fn bad_type_names_its_path() {
    let e = parse_err(&format!("[server]\nworkers = \"four\"\n{MINIMAL}"));
    assert!(e.starts_with("server.workers: invalid type"), "{e}");
    let e = parse_err(&format!("[wechat]\ntoken_api = \"fast\"\n{MINIMAL}"));
    assert!(e.starts_with("wechat.token_api: unknown variant"), "{e}");
}

#[test]
fn missing_required_key_names_it() {
    let e = parse_err("[[apps]]\nname = \"main\"\n");
    assert!(e.starts_with("apps[0]: missing field `appid`"), "{e}");
    let e = parse_err("[server]\nworkers = 2\n");
    assert!(e.starts_with("apps: at least one"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    for (snippet, key) in [
        ("[server]\nlisten = \"localhost\"\n", "server.listen"),
        ("[server]\nworkers = 1025\n", "server.workers"),
        ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes"),
        ("[server]\nmax_connections_per_ip = 1000000\n", "server.max_connections_per_ip"),
        ("[session]\nttl_seconds = 10\n", "session.ttl_seconds"),
        ("[session]\ncode_replay_seconds = 900\n", "session.code_replay_seconds"),
        ("[session]\nmax_per_user = 0\n", "session.max_per_user"),
        ("[wechat]\napi_base = \"ftp://x\"\n", "wechat.api_base"),
        ("[wechat]\nretries = 50\n", "wechat.retries"),
        ("[decrypt]\nmax_age_seconds = -1\n", "decrypt.max_age_seconds"),
        ("[rate_limit]\nphone_per_user_per_hour = 0\n", "rate_limit.phone_per_user_per_hour"),
    ] {
        let e = parse_err(&format!("{snippet}{MINIMAL}"));
        assert!(e.starts_with(&format!("{key}: ")), "{snippet:?} gave {e}");
    }
}

#[test]
fn duplicate_app_names_are_refused() {
    let e = parse_err(&format!("{MINIMAL}{MINIMAL}"));
    assert!(e.starts_with("apps[1].name: \"main\" is used"), "{e}");
}

#[test]
fn syntax_errors_give_a_line() {
    let e = parse_err("[server\nlisten = 1\n");
    assert!(e.starts_with("appliance.toml line 1: "), "{e}");
    assert!(!e.contains('\n'));
}

#[test]
fn missing_secret_names_the_variable() {
    let e = parse_err("[[apps]]\nname = \"shop-cn\"\nappid = \"wx1234567890\"\n");
    assert!(e.contains("WXLOGIN_SECRET_SHOP_CN"), "{e}");
    assert!(e.starts_with("apps[0].secret: "), "{e}");
}

#[test]
fn secret_from_environment_and_file() {
    let text = "[[apps]]\nname = \"main\"\nappid = \"wx1234567890\"\n";
    let env = |k: &str| (k == "WXLOGIN_SECRET_MAIN").then(|| "from-env".to_string());
    let c = parse(text, Path::new("."), &env).unwrap();
    assert_eq!(c.apps[0].secret.expose(), "from-env");

    let dir = std::env::temp_dir().join(format!("wxlogin-cfg-{}", crate::secrets::random_id(6)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), "from-file\n").unwrap();
    let env = |k: &str| (k == "WXLOGIN_SECRET_MAIN_FILE").then(|| "secret".to_string());
    let c = parse(text, &dir, &env).unwrap();
    assert_eq!(c.apps[0].secret.expose(), "from-file");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn internal_keys_from_environment() {
    let env = |k: &str| (k == "WXLOGIN_INTERNAL_KEYS").then(|| "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb,".to_string());
    let c = parse(MINIMAL, Path::new("."), &env).unwrap();
    let keys: Vec<_> = c.internal.api_keys.iter().map(|k| k.expose()).collect();
    assert_eq!(keys, ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
}

#[test]
fn debug_output_hides_secrets() {
    let c = parse(MINIMAL, Path::new("."), &no_env).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
}

#[test]
fn admin_commands_tolerate_a_missing_secret_but_nothing_else() {
    let text = "[[apps]]\nname = \"main\"\nappid = \"wx1234567890\"\n";
    assert!(parse(text, Path::new("."), &no_env).unwrap_err().to_string().contains("WXLOGIN_SECRET_MAIN"));
    let c = parse_with(text, Path::new("."), &no_env, Secrets::Optional).unwrap();
    assert_eq!(c.apps[0].secret.expose(), "");
    let env = |k: &str| (k == "WXLOGIN_SECRET_MAIN_FILE").then(|| "/nonexistent/secret".to_string());
    assert!(parse_with(text, Path::new("."), &env, Secrets::Optional).is_ok());
    let env = |k: &str| (k == "WXLOGIN_SECRET_MAIN").then(|| "from-env".to_string());
    assert_eq!(parse_with(text, Path::new("."), &env, Secrets::Optional).unwrap().apps[0].secret.expose(), "from-env");
    let bad = "[server]\nworkers = 2000\n[[apps]]\nname = \"main\"\nappid = \"wx1234567890\"\n";
    assert!(parse_with(bad, Path::new("."), &no_env, Secrets::Optional)
        .unwrap_err()
        .to_string()
        .contains("server.workers"));
}

#[test]
fn a_missing_secret_error_stays_on_one_line_whatever_the_app_name() {
    let e = parse_err("[[apps]]\nname = \"a\\nb\"\nappid = \"wx4f4bc4dec97d474b\"\n");
    assert!(!e.contains('\n'), "{e:?}");
    assert!(e.starts_with("apps[0].secret: the app secret of \"a\\nb\" is missing"), "{e}");
    let e = parse_err("[[apps]]\nname = \"main\"\nappid = \"wx4f4bc4dec97d474b\"\n");
    assert!(e.contains("the app secret of \"main\" is missing: set WXLOGIN_SECRET_MAIN"), "{e}");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    const SHIPPED: &str = include_str!("../../appliance.toml");

    fn env(k: &str) -> Option<String> {
        (k == "WXLOGIN_SECRET_MAIN").then(|| "x".to_string())
    }

    /// Ok, or one line `KEY: message` where KEY is a key path or names appliance.toml.
    fn check(text: &str) -> Result<(), TestCaseError> {
        if let Err(e) = parse(text, Path::new("/etc/wxlogin"), &env) {
            let shown = e.to_string();
            prop_assert!(!shown.contains(['\n', '\r']), "more than one line: {:?}", shown);
            prop_assert!(!e.message.trim().is_empty(), "no message: {:?}", shown);
            // TOML bare keys are made of A-Z a-z 0-9 _ and -, and may start with any of them.
            let key_path = e.key.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !e.key.contains(char::is_whitespace);
            prop_assert!(e.key.starts_with("appliance.toml") || key_path, "not a key path: {:?}", shown);
            prop_assert!(shown.starts_with(&format!("{}: ", e.key)), "{:?}", shown);
        }
        Ok(())
    }

    /// A TOML scalar (or small compound) to put in place of a value.
    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            any::<bool>().prop_map(|b| b.to_string()),
            prop::collection::vec(any::<char>(), 0..16)
                .prop_map(|c| serde_json::to_string(&c.into_iter().collect::<String>()).expect("a string")),
            "'[^'\n]{0,12}'",
            // Control characters and escapes, which must not leak into an error's one line.
            "[a-z\n\r\t\"\\\\]{0,8}".prop_map(|s| serde_json::to_string(&s).expect("a string")),
            "[a-z0-9_.:-]{0,8}",
            Just("[]".to_string()),
            Just("[1, \"a\"]".to_string()),
            Just("{}".to_string()),
            Just("1979-05-27T07:32:00Z".to_string()),
            Just("\"\"".to_string()),
            Just("-0".to_string()),
            Just("inf".to_string()),
        ]
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Insert(prop::sample::Index, char),
        Delete(prop::sample::Index),
        Replace(prop::sample::Index, String),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let ch =
            prop_oneof![any::<char>(), prop::sample::select(vec!['"', '\'', '[', ']', '=', '\n', '#', '.', ',', '{'])];
        prop_oneof![
            (any::<prop::sample::Index>(), ch).prop_map(|(i, c)| Mutation::Insert(i, c)),
            any::<prop::sample::Index>().prop_map(Mutation::Delete),
            (any::<prop::sample::Index>(), scalar()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        ]
    }

    fn apply(text: &str, m: &Mutation) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        match m {
            Mutation::Insert(i, c) => {
                chars.insert(i.index(chars.len() + 1), *c);
                chars.into_iter().collect()
            }
            Mutation::Delete(i) => {
                chars.remove(i.index(chars.len()));
                chars.into_iter().collect()
            }
            Mutation::Replace(i, value) => {
                // The value of one `key = value` line, up to its comment.
                let lines: Vec<&str> = text.lines().collect();
                let assignments: Vec<usize> = (0..lines.len()).filter(|&n| lines[n].contains(" = ")).collect();
                let n = assignments[i.index(assignments.len())];
                let (key, _) = lines[n].split_once(" = ").expect("an assignment");
                let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                out[n] = format!("{key} = {value}");
                out.join("\n")
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_arbitrary_text_parses_or_fails_on_one_line(text in "\\PC{0,200}") {
            check(&text)?;
        }

        #[test]
        fn prop_toml_like_text_parses_or_fails_on_one_line(
            text in "((\\[{1,2}[a-z_.]{0,12}\\]{1,2}|[a-z_]{1,16} = [\"0-9a-z_:.\\[\\]{}, ]{0,16})\n){0,8}"
        ) {
            check(&text)?;
        }

        #[test]
        fn prop_arbitrary_app_fields_parse_or_fail_on_one_line(name in scalar(), appid in scalar(), secret in scalar()) {
            check(&format!("[[apps]]\nname = {name}\nappid = {appid}\n"))?;
            check(&format!("[[apps]]\nname = {name}\nappid = {appid}\nsecret = {secret}\n"))?;
        }

        #[test]
        fn prop_mutated_shipped_config_parses_or_fails_on_one_line(
            mutations in prop::collection::vec(mutation(), 1..4)
        ) {
            let mut text = SHIPPED.to_string();
            for m in &mutations {
                text = apply(&text, m);
            }
            check(&text)?;
        }
    }
}

const SECRET_LOOKING: &str = "my-secret-value-1234";

fn assert_no_value(e: &str) {
    assert!(!e.contains(SECRET_LOOKING) && !e.contains("my-secret"), "the value leaks: {e}");
}

#[test]
fn type_errors_name_the_key_and_the_expected_type_but_not_the_value() {
    let e = parse_err(&format!("[internal]\napi_keys = \"{SECRET_LOOKING}\"\n{MINIMAL}"));
    assert_eq!(e, "internal.api_keys: invalid type: string, expected a sequence");
    let e = parse_err(&format!("[internal]\napi_keys = [\"{SECRET_LOOKING}\", 5]\n{MINIMAL}"));
    assert_eq!(e, "internal.api_keys[1]: invalid type: integer, expected a string");
    let e = parse_err("[[apps]]\nname = \"main\"\nappid = \"wx4f4bc4dec97d474b\"\nsecret = 12345678901234567890123\n");
    assert!(e.starts_with("apps[0].secret: invalid type: integer, expected a string"), "{e}");
    assert!(!e.contains("1234567890"), "{e}");
    let e = parse_err(&format!("[server]\nworkers = 1.5\n{MINIMAL}"));
    assert_eq!(e, "server.workers: invalid type: floating point, expected usize");
}

#[test]
fn invalid_values_and_variants_are_not_echoed() {
    let e = parse_err(&format!("[rate_limit]\nlogin_per_ip_per_minute = 98765432109\n{MINIMAL}"));
    assert_eq!(e, "rate_limit.login_per_ip_per_minute: invalid value: integer, expected u32");
    let e = parse_err(&format!("[wechat]\ntoken_api = \"{SECRET_LOOKING}\"\n{MINIMAL}"));
    assert_eq!(e, "wechat.token_api: unknown variant, expected `stable` or `classic`");
}

#[test]
fn syntax_errors_name_the_line_but_not_its_text() {
    for (line, text) in [
        (4, format!("[[apps]]\nname = \"main\"\nappid = \"wx4f4bc4dec97d474b\"\nsecret = {SECRET_LOOKING}\n")),
        (
            4,
            format!("[[apps]]\nname = \"main\"\nappid = \"wx4f4bc4dec97d474b\"\nsecret = \"x\" \"{SECRET_LOOKING}\"\n"),
        ),
        (2, format!("[internal]\napi_keys = [\"{SECRET_LOOKING}\n")),
        (2, format!("[internal]\napi_keys = \'\'\'{SECRET_LOOKING}\n")),
        (1, format!("{SECRET_LOOKING}\n")),
    ] {
        let e = parse_err(&text);
        assert!(e.starts_with(&format!("appliance.toml line {line}: ")), "{e}");
        assert_no_value(&e);
    }
}

#[test]
fn quoted_source_text_is_cut_from_parser_messages() {
    let source = "secret = \"my-secret-value-1234";
    assert_eq!(
        without_quoted_source("bad `my-secret-value-1234`, expected `=`", source),
        "bad (value not shown), expected `=`"
    );
    assert_eq!(without_quoted_source("expected `\"`, `'`", source), "expected `\"`, `'`");
    assert_eq!(without_quoted_source("bad \"my-secret-value", source), "bad ");
}

#[test]
fn short_internal_keys_are_refused_without_printing_them() {
    let e = parse_err(&format!("[internal]\napi_keys = [\"{}\", \"short-key-123\"]\n{MINIMAL}", "k".repeat(16)));
    assert!(e.starts_with("internal.api_keys[1]: is shorter than 16 characters"), "{e}");
    assert!(!e.contains("short-key-123"), "{e}");
    let env = |k: &str| (k == "WXLOGIN_INTERNAL_KEYS").then(|| "short-key-456".to_string());
    let e = parse(MINIMAL, Path::new("."), &env).unwrap_err().to_string();
    assert!(e.starts_with("WXLOGIN_INTERNAL_KEYS[0]: is shorter than 16 characters"), "{e}");
    assert!(!e.contains("short-key-456"), "{e}");
}

mod value_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_no_config_error_quotes_the_value(value in "[A-Za-z0-9_-]{12,40}", template in 0usize..6) {
            let text = match template {
                0 => format!("[internal]\napi_keys = \"{value}\"\n{MINIMAL}"),
                1 => format!("[wechat]\ntoken_api = \"{value}\"\n{MINIMAL}"),
                2 => format!("[server]\nlisten = {value}\n{MINIMAL}"),
                3 => format!("[server]\nworkers = \"{value}\"\n{MINIMAL}"),
                4 => format!("[internal]\napi_keys = [\"{value}\", 7]\n{MINIMAL}"),
                _ => format!("[[apps]]\nname = \"main\"\nappid = \"wx4f4bc4dec97d474b\"\nsecret = [{value}]\n"),
            };
            let e = parse(&text, Path::new("/etc/wxlogin"), &no_env).unwrap_err().to_string();
            prop_assert!(!e.contains(&value), "{}", e);
        }
    }
}
