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

/// The app secret itself given as `WXLOGIN_SECRET_<APP>_FILE` (a common slip): the error
/// says the file cannot be read without printing the secret back.
#[test]
fn a_secret_given_as_its_file_name_is_not_printed() {
    let text = "[[apps]]\nname = \"main\"\nappid = \"wx1234567890\"\n";
    let secret = "0123456789abcdef0123456789abcdef";
    let env = |k: &str| (k == "WXLOGIN_SECRET_MAIN_FILE").then(|| secret.to_string());
    let e = parse(text, Path::new("/etc/wxlogin"), &env).unwrap_err().to_string();
    assert!(e.starts_with("WXLOGIN_SECRET_MAIN_FILE: cannot read the file it names"), "{e}");
    assert!(!e.contains(secret), "{e}");
    let env = |k: &str| (k == "WXLOGIN_SECRET_MAIN_FILE").then(|| "secrets/main.txt".to_string());
    let e = parse(text, Path::new("/etc/wxlogin"), &env).unwrap_err().to_string();
    assert!(e.starts_with("WXLOGIN_SECRET_MAIN_FILE: cannot read /etc/wxlogin/secrets/main.txt: "), "{e}");
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

mod pay_config {
    use super::*;

    const MERCHANT_KEY: &str = include_str!("../pay/testdata/wechat_docs_merchant_key.pem");
    const PUBLIC_KEY: &str = include_str!("../pay/testdata/fake_wechatpay_platform_public_key.pem");
    const APIV3: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";

    /// A folder with the merchant key, the public key and an APIv3 key file.
    fn keys_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("wxlogin-paycfg-{}", crate::secrets::random_id(6)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("apiclient_key.pem"), MERCHANT_KEY).unwrap();
        std::fs::write(dir.join("pub_key.pem"), PUBLIC_KEY).unwrap();
        std::fs::write(dir.join("apiv3"), format!("{APIV3}\n")).unwrap();
        dir
    }

    fn pay_table(extra: &str) -> String {
        format!(
            "{MINIMAL}[pay]\nmchid = \"1900007291\"\nmerchant_serial = \"408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB\"\n\
             merchant_key_file = \"apiclient_key.pem\"\napiv3_key = \"{APIV3}\"\npublic_key_file = \"pub_key.pem\"\n\
             public_key_id = \"PUB_KEY_ID_0114232134912410000000000000\"\n\
             notify_url = \"https://login.example.com/v1/pay/notify\"\n{extra}"
        )
    }

    /// `text` with the line starting with `key =` removed.
    fn without(text: &str, key: &str) -> String {
        text.lines().filter(|l| !l.starts_with(&format!("{key} ="))).map(|l| format!("{l}\n")).collect()
    }

    fn pay_of(text: &str, dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<PayConfig, String> {
        parse(text, dir, env).map(|c| c.pay.expect("[pay] is there")).map_err(|e| e.to_string())
    }

    #[test]
    fn no_pay_table_means_payments_are_off() {
        assert!(parse(MINIMAL, Path::new("."), &no_env).unwrap().pay.is_none());
    }

    #[test]
    fn a_full_pay_table_loads_its_keys_and_defaults() {
        let dir = keys_dir();
        let text = pay_table(
            "webhook_url = \"https://svc.internal/hooks/pay\"\nwebhook_secret = \"0123456789abcdef0123\"\n\
             [[pay.products]]\nid = \"vip30\"\ndescription = \"VIP, 30 days\"\namount = 990\n\
             [[pay.products]]\nid = \"coins_100\"\ndescription = \"一百金币\"\namount = 100\n",
        );
        let c = parse(&text, &dir, &no_env).unwrap();
        let p = c.pay.unwrap();
        assert_eq!(p.mchid, "1900007291");
        assert_eq!(p.merchant.mchid(), "1900007291");
        assert_eq!(p.api_base, "https://api.mch.weixin.qq.com");
        assert_eq!(p.order_ttl_seconds, 7200);
        assert_eq!(p.webhook_secret.expose(), "0123456789abcdef0123");
        assert_eq!(
            p.product("vip30"),
            Some(&Product { id: "vip30".into(), description: "VIP, 30 days".into(), amount: 990 })
        );
        assert_eq!(p.product("coins_100").map(|p| p.amount), Some(100));
        assert!(p.product("nope").is_none());
        assert!(c.secret_files.contains(&dir.join("apiclient_key.pem")), "the private key is a secret file");
        let shown = format!("{p:?}");
        for leak in [APIV3, "0123456789abcdef0123", "MII"] {
            assert!(!shown.contains(leak), "Debug shows {leak}: {shown}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn secrets_come_from_the_environment_and_from_files() {
        let dir = keys_dir();
        let text =
            without(&without(&pay_table("webhook_url = \"http://10.0.0.5/hook\"\n"), "merchant_key_file"), "apiv3_key");
        // Variables.
        let env = |k: &str| match k {
            "WXLOGIN_PAY_MERCHANT_KEY" => Some(MERCHANT_KEY.to_string()),
            "WXLOGIN_PAY_APIV3_KEY" => Some(format!("{APIV3}\n")),
            "WXLOGIN_PAY_WEBHOOK_SECRET" => Some("webhook-secret-from-env".to_string()),
            _ => None,
        };
        let p = pay_of(&text, &dir, &env).unwrap();
        assert_eq!(p.webhook_secret.expose(), "webhook-secret-from-env");
        // `_FILE`s, relative to the configuration's folder, one trailing newline trimmed.
        std::fs::write(dir.join("hook"), "webhook-secret-from-file\r\n").unwrap();
        let env = |k: &str| match k {
            "WXLOGIN_PAY_MERCHANT_KEY_FILE" => Some("apiclient_key.pem".to_string()),
            "WXLOGIN_PAY_APIV3_KEY_FILE" => Some("apiv3".to_string()),
            "WXLOGIN_PAY_WEBHOOK_SECRET_FILE" => Some(dir.join("hook").display().to_string()),
            _ => None,
        };
        let c = parse(&text, &dir, &env).unwrap();
        assert_eq!(c.pay.unwrap().webhook_secret.expose(), "webhook-secret-from-file");
        for f in ["apiclient_key.pem", "apiv3", "hook"] {
            assert!(c.secret_files.contains(&dir.join(f)), "{f}");
        }
        // Only one newline is trimmed: an APIv3 key file with two is 33 bytes.
        std::fs::write(dir.join("apiv3"), format!("{APIV3}\n\n")).unwrap();
        let e = pay_of(&text, &dir, &env).unwrap_err();
        assert!(e.starts_with("pay.apiv3_key: the APIv3 key must be exactly 32 bytes"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_secrets_name_where_to_put_them() {
        let dir = keys_dir();
        let e = pay_of(&without(&pay_table(""), "merchant_key_file"), &dir, &no_env).unwrap_err();
        assert!(
            e.starts_with("pay.merchant_key_file: is missing") && e.contains("WXLOGIN_PAY_MERCHANT_KEY_FILE"),
            "{e}"
        );
        let e = pay_of(&without(&pay_table(""), "apiv3_key"), &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.apiv3_key: is missing") && e.contains("WXLOGIN_PAY_APIV3_KEY"), "{e}");
        let e = pay_of(&pay_table("webhook_url = \"https://svc/hook\"\n"), &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.webhook_secret: must be at least 16"), "{e}");
        let env = |k: &str| (k == "WXLOGIN_PAY_APIV3_KEY_FILE").then(|| "no-such-file".to_string());
        let e = pay_of(&without(&pay_table(""), "apiv3_key"), &dir, &env).unwrap_err();
        assert!(e.starts_with("WXLOGIN_PAY_APIV3_KEY_FILE: cannot read "), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn admin_commands_run_with_payments_off_when_a_key_is_missing() {
        let dir = keys_dir();
        let text = without(&pay_table(""), "apiv3_key");
        let c = parse_with(&text, &dir, &no_env, Secrets::Optional).unwrap();
        assert!(c.pay.is_none());
        let bad = pay_table("order_ttl_seconds = 10\n");
        let e = parse_with(&bad, &dir, &no_env, Secrets::Optional).unwrap_err().to_string();
        assert!(e.starts_with("pay.order_ttl_seconds: "), "the rest is still checked: {e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_keys_name_their_key_and_not_their_content() {
        let dir = keys_dir();
        std::fs::write(
            dir.join("bad.pem"),
            "-----BEGIN PRIVATE KEY-----\nmy-secret-value-1234\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let text = pay_table("").replace("\"apiclient_key.pem\"", "\"bad.pem\"");
        let e = pay_of(&text, &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.merchant_key_file: the private key"), "{e}");
        assert_no_value(&e);
        let env = |k: &str| (k == "WXLOGIN_PAY_MERCHANT_KEY").then(|| PUBLIC_KEY.to_string());
        let e = pay_of(&without(&pay_table(""), "merchant_key_file"), &dir, &env).unwrap_err();
        assert!(e.starts_with("WXLOGIN_PAY_MERCHANT_KEY: "), "{e}");
        assert!(!e.contains("MII"), "{e}");
        let e = pay_of(&pay_table("").replace(APIV3, SECRET_LOOKING), &dir, &no_env).unwrap_err();
        assert_eq!(e, "pay.apiv3_key: the APIv3 key must be exactly 32 bytes (it is 20 bytes)");
        let text = pay_table("").replace("\"pub_key.pem\"", "\"apiclient_key.pem\"");
        let e = pay_of(&text, &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.public_key_file: the public key"), "{e}");
        assert_no_key_material(&e);
        let e = pay_of(&pay_table("").replace("\"pub_key.pem\"", "\"nothing.pem\""), &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.public_key_file: cannot read "), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// No piece of the merchant private key (any of its base64 lines, or its start).
    fn assert_no_key_material(e: &str) {
        assert!(!e.contains("MII"), "{e}");
        for line in MERCHANT_KEY.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!e.contains(line.trim()), "a line of the private key leaks: {e}");
        }
    }

    /// The three pay secrets given with the wrong type, in the wrong place or too short:
    /// the error names the key, never the value.
    #[test]
    fn pay_secrets_of_the_wrong_type_or_place_are_not_quoted() {
        let dir = keys_dir();
        let digits = "98765432109876543210987654321098";
        let e = pay_of(&pay_table("").replace(&format!("\"{APIV3}\""), digits), &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.apiv3_key: "), "{e}");
        assert!(!e.contains("9876543210"), "{e}");
        let text = pay_table(&format!("webhook_url = \"https://svc/hook\"\nwebhook_secret = [\"{SECRET_LOOKING}\"]\n"));
        let e = pay_of(&text, &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.webhook_secret: "), "{e}");
        assert_no_value(&e);
        let text = pay_table(&format!("webhook_url = \"https://svc/hook\"\nwebhook_secret = {digits}\n"));
        let e = pay_of(&text, &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.webhook_secret: ") && !e.contains("9876543210"), "{e}");
        // A line of the private key where its file name belongs, the key in the APIv3 key's variable.
        let pem_line = MERCHANT_KEY.lines().nth(1).unwrap().trim().to_string();
        let text = pay_table("").replace("\"apiclient_key.pem\"", &format!("\"{pem_line}\""));
        let e = pay_of(&text, &dir, &no_env).unwrap_err();
        assert!(e.starts_with("pay.merchant_key_file: "), "{e}");
        assert_no_key_material(&e);
        let env = |k: &str| (k == "WXLOGIN_PAY_APIV3_KEY").then(|| MERCHANT_KEY.to_string());
        let e = pay_of(&without(&pay_table(""), "apiv3_key"), &dir, &env).unwrap_err();
        assert!(e.starts_with("WXLOGIN_PAY_APIV3_KEY: ") || e.starts_with("pay.apiv3_key: "), "{e}");
        assert_no_key_material(&e);
        // The APIv3 key, the webhook secret and the key's PEM given as their `_FILE`.
        for (var, value) in [
            ("WXLOGIN_PAY_APIV3_KEY_FILE", APIV3.to_string()),
            ("WXLOGIN_PAY_WEBHOOK_SECRET_FILE", "0123456789abcdef0123".to_string()),
            ("WXLOGIN_PAY_MERCHANT_KEY_FILE", MERCHANT_KEY.to_string()),
        ] {
            let env = |k: &str| (k == var).then(|| value.clone());
            let text =
                without(&without(&pay_table("webhook_url = \"https://svc/hook\"\n"), "apiv3_key"), "merchant_key_file");
            let text = if var.contains("APIV3") {
                text
            } else {
                text.replace("[pay]\n", &format!("[pay]\napiv3_key = \"{APIV3}\"\n"))
            };
            let text = if var.contains("MERCHANT") {
                text
            } else {
                text.replace("[pay]\n", "[pay]\nmerchant_key_file = \"apiclient_key.pem\"\n")
            };
            let e = pay_of(&text, &dir, &env).unwrap_err();
            assert!(e.starts_with(&format!("{var}: cannot read the file it names")), "{e}");
            assert!(!e.contains(value.trim()) && !e.contains(&value[..16]), "{var}: {e}");
            assert_no_key_material(&e);
        }
        let env = |k: &str| (k == "WXLOGIN_PAY_WEBHOOK_SECRET").then(|| SECRET_LOOKING[..10].to_string());
        let e = pay_of(&pay_table("webhook_url = \"https://svc/hook\"\n"), &dir, &env).unwrap_err();
        assert!(e.starts_with("pay.webhook_secret: must be at least 16"), "{e}");
        assert!(!e.contains(&SECRET_LOOKING[..10]), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_pay_key_names_itself_when_wrong() {
        let dir = keys_dir();
        let base = pay_table("");
        let product = |body: &str| pay_table(&format!("[[pay.products]]\n{body}\n"));
        let cases: Vec<(String, &str)> = vec![
            (base.replace("\"1900007291\"", "\"19000x\""), "pay.mchid"),
            (base.replace("\"1900007291\"", "\"\""), "pay.mchid"),
            (base.replace("\"408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB\"", "\"not hex\""), "pay.merchant_serial"),
            (without(&base, "public_key_id"), "pay.public_key_id"),
            (without(&base, "public_key_file"), "pay.public_key_file"),
            (without(&without(&base, "public_key_file"), "public_key_id"), "pay.public_key_file"),
            (base.replace("PUB_KEY_ID_0114232134912410000000000000", "PUB KEY"), "pay.public_key_id"),
            (without(&base, "notify_url"), "pay"),
            (base.replace("https://login.example.com/v1/pay/notify", ""), "pay.notify_url"),
            (base.replace("https://login", "http://login"), "pay.notify_url"),
            (base.replace("https://login.example.com/v1/pay/notify", "http://127.0.0.1.evil.com/n"), "pay.notify_url"),
            (base.replace("/v1/pay/notify", "/v1/pay/notify?x=1"), "pay.notify_url"),
            (base.replace("/v1/pay/notify", "/v1/pay/notify#x"), "pay.notify_url"),
            (base.replace("/v1/pay/notify", &format!("/{}", "n".repeat(250))), "pay.notify_url"),
            (base.replace("https://login.example.com/v1/pay/notify", "https:///x"), "pay.notify_url"),
            (pay_table("api_base = \"https://api.mch.weixin.qq.com/\"\n"), "pay.api_base"),
            (pay_table("api_base = \"ftp://api.mch.weixin.qq.com\"\n"), "pay.api_base"),
            (pay_table("api_base = \"https://x/?a=b\"\n"), "pay.api_base"),
            (pay_table("order_ttl_seconds = 299\n"), "pay.order_ttl_seconds"),
            (pay_table("order_ttl_seconds = 604801\n"), "pay.order_ttl_seconds"),
            (pay_table("webhook_url = \"svc/hook\"\nwebhook_secret = \"0123456789abcdef\"\n"), "pay.webhook_url"),
            (pay_table("webhook_url = \"https://svc/hook\"\nwebhook_secret = \"short\"\n"), "pay.webhook_secret"),
            (pay_table("colour = 1\n"), "pay.colour"),
            (product("id = \"\"\ndescription = \"d\"\namount = 1"), "pay.products[0].id"),
            (product("id = \"a.b\"\ndescription = \"d\"\namount = 1"), "pay.products[0].id"),
            (product(&format!("id = \"{}\"\ndescription = \"d\"\namount = 1", "x".repeat(33))), "pay.products[0].id"),
            (
                product("id = \"a\"\ndescription = \"d\"\namount = 1\n[[pay.products]]\nid = \"a\"\ndescription = \"e\"\namount = 2"),
                "pay.products[1].id",
            ),
            (product("id = \"a\"\ndescription = \"\"\namount = 1"), "pay.products[0].description"),
            (product(&format!("id = \"a\"\ndescription = \"{}\"\namount = 1", "字".repeat(128))), "pay.products[0].description"),
            (product("id = \"a\"\ndescription = \"VIP 🎉\"\namount = 1"), "pay.products[0].description"),
            (product("id = \"a\"\ndescription = \"a\\nb\"\namount = 1"), "pay.products[0].description"),
            (product("id = \"a\"\ndescription = \"d\"\namount = 0"), "pay.products[0].amount"),
            (product("id = \"a\"\ndescription = \"d\"\namount = 1000000001"), "pay.products[0].amount"),
            (product("id = \"a\"\ndescription = \"d\""), "pay.products[0]"),
        ];
        for (text, key) in cases {
            let e = pay_of(&text, &dir, &no_env).unwrap_err();
            assert!(e.starts_with(&format!("{key}: ")), "expected {key}, got {e}");
            assert!(!e.contains('\n'), "{e:?}");
        }
        // The limits themselves are accepted.
        let ok = [
            pay_table("order_ttl_seconds = 300\n"),
            pay_table("order_ttl_seconds = 604800\n"),
            pay_table("api_base = \"http://127.0.0.1:9000\"\n"),
            product(&format!(
                "id = \"{}\"\ndescription = \"{}\"\namount = 1000000000",
                "x".repeat(32),
                "字".repeat(127)
            )),
            product("id = \"a\"\ndescription = \"d\"\namount = 1"),
        ];
        for text in ok {
            pay_of(&text, &dir, &no_env).unwrap();
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn plain_http_notify_urls_are_for_loopback_only() {
        let dir = keys_dir();
        for url in ["http://127.0.0.1:8080/v1/pay/notify", "http://localhost/v1/pay/notify", "http://[::1]:9/n"] {
            let text = pay_table("").replace("https://login.example.com/v1/pay/notify", url);
            assert_eq!(pay_of(&text, &dir, &no_env).unwrap().notify_url, url);
        }
        for url in ["http://10.0.0.1/n", "http://localhost.example.com/n", "http://127.0.0.1@evil.com/n"] {
            let text = pay_table("").replace("https://login.example.com/v1/pay/notify", url);
            let e = pay_of(&text, &dir, &no_env).unwrap_err();
            assert!(e.starts_with("pay.notify_url: must be an https:// URL"), "{url}: {e}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn platform_certificates_alone_or_beside_a_public_key_are_accepted() {
        let dir = keys_dir();
        let both = pay_of(&pay_table("platform_certificates = true\n"), &dir, &no_env).unwrap();
        assert!(both.platform_certificates);
        assert_eq!(both.verifier.key_id().as_deref(), Some("PUB_KEY_ID_0114232134912410000000000000"));
        let alone = without(&without(&pay_table("platform_certificates = true\n"), "public_key_file"), "public_key_id");
        let alone = pay_of(&alone, &dir, &no_env).unwrap();
        assert!(alone.platform_certificates && alone.verifier.key_id().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_no_pay_error_quotes_the_value(value in "[A-Za-z0-9_-]{12,40}", template in 0usize..12) {
            let dir = keys_dir();
            let base = pay_table("");
            let text = match template {
                0 => base.replace("\"1900007291\"", &format!("\"{value}\"")),
                1 => base.replace("408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", &format!("{value}!")),
                2 => base.replace(APIV3, &format!("{value}{}", "x".repeat(21))), // never 32 bytes
                3 => base.replace("https://login.example.com/v1/pay/notify", &format!("http://{value}/n")),
                4 => base.replace("PUB_KEY_ID_0114232134912410000000000000", &format!("{value} ")),
                5 => pay_table(&format!("api_base = \"{value}\"\n")),
                6 => pay_table(&format!("webhook_url = \"https://x/h\"\nwebhook_secret = \"{}\"\n", &value[..12])),
                7 => pay_table(&format!("order_ttl_seconds = \"{value}\"\n")),
                8 => pay_table(&format!("[[pay.products]]\nid = \"{value}.\"\ndescription = \"d\"\namount = 1\n")),
                9 => pay_table(&format!("[[pay.products]]\nid = \"a\"\ndescription = \"{value}🎉\"\namount = 1\n")),
                10 => base.replace("\"apiclient_key.pem\"", &format!("[\"{value}\"]")),
                _ => pay_table(&format!("webhook_url = \"{value}\"\n")),
            };
            let e = parse(&text, &dir, &no_env).unwrap_err().to_string();
            let _ = std::fs::remove_dir_all(&dir);
            prop_assert!(!e.contains(&value) && !e.contains(&value[..12]), "{}", e);
            prop_assert!(!e.contains('\n'), "{}", e);
        }
    }
}

#[test]
fn database_url_from_the_file_or_the_environment_and_never_printed() {
    let c = parse(&format!("[database]\nurl = \"postgres://wx:pw@db:5432/wx\"\n{MINIMAL}"), Path::new("/x"), &no_env)
        .unwrap();
    assert_eq!(c.database.url.as_ref().map(|u| u.expose()), Some("postgres://wx:pw@db:5432/wx"));
    assert_eq!(c.database.max_connections, 16);
    assert!(!format!("{:?}", c.database).contains("pw@"), "the URL is a Secret");

    let env = |k: &str| (k == "WXLOGIN_DATABASE_URL").then(|| "postgresql://a:b@h/d".to_string());
    let c = parse(MINIMAL, Path::new("/x"), &env).unwrap();
    assert_eq!(c.database.url.as_ref().map(|u| u.expose()), Some("postgresql://a:b@h/d"));
    // The file's choice wins over the environment, SQLite path included.
    let c = parse(&format!("[database]\npath = \"w.db\"\n{MINIMAL}"), Path::new("/x"), &env).unwrap();
    assert!(c.database.url.is_none());
    assert_eq!(c.database.path, Path::new("/x/w.db"));

    let dir = std::env::temp_dir().join(format!("wxlogin-dburl-{}", crate::secrets::random_id(6)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("url"), "postgres://u:filepw@h/d\n").unwrap();
    let env = |k: &str| (k == "WXLOGIN_DATABASE_URL_FILE").then(|| "url".to_string());
    let c = parse(MINIMAL, &dir, &env).unwrap();
    assert_eq!(c.database.url.as_ref().map(|u| u.expose()), Some("postgres://u:filepw@h/d"));
    assert_eq!(c.secret_files, vec![dir.join("url")]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn database_path_and_url_together_or_a_bad_url_are_refused_without_quoting_it() {
    let e = parse_err(&format!("[database]\npath = \"a.db\"\nurl = \"postgres://u:pw@h/d\"\n{MINIMAL}"));
    assert!(e.starts_with("database: `path`") && e.contains("`url`"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let e = parse_err(&format!("[database]\nurl = \"mysql://u:hunter2@h/d\"\n{MINIMAL}"));
    assert!(e.starts_with("database.url: must be a PostgreSQL URL"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let env = |k: &str| (k == "WXLOGIN_DATABASE_URL").then(|| "hunter2".to_string());
    let e = parse(MINIMAL, Path::new("/x"), &env).unwrap_err().to_string();
    assert!(e.starts_with("WXLOGIN_DATABASE_URL: must be") && !e.contains("hunter2"), "{e}");
    let e = parse_err(&format!("[database]\nmax_connections = 1\n{MINIMAL}"));
    assert!(e.starts_with("database.max_connections: must be between 4"), "{e}");
}
