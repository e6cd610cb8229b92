//! WeChat Pay's official test vectors (research/wechat-pay.md §10, keys in its appendices)
//! and the ways each check must fail.
//!
//! Every key under `testdata/` is public and for tests only: two come from WeChat's own
//! documentation, the rest were generated for this project (see `testdata/README.md`).

use base64::Engine;

use super::verify::{self, PROBE_PREFIX, WINDOW_SECONDS};
use super::*;

/// WeChat's documented test merchant key (Appendix A: mchid 1900007291).
const DOCS_MERCHANT_KEY: &str = include_str!("testdata/wechat_docs_merchant_key.pem");
const DOCS_MCHID: &str = "1900007291";
const DOCS_SERIAL: &str = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB";
/// The WeChat Pay public key of the documented response signature (Appendix B).
const DOCS_PAY_PUBLIC_KEY: &str = include_str!("testdata/wechat_docs_pay_public_key.pem");
const DOCS_PAY_KEY_ID: &str = "PUB_KEY_ID_0000000000000024101100397200000006";
/// The fake WeChat Pay's own platform key pair (generated for this project).
const FAKE_PLATFORM_KEY: &str = include_str!("testdata/fake_wechatpay_platform_key.pem");
const FAKE_PLATFORM_PUBLIC_KEY: &str = include_str!("testdata/fake_wechatpay_platform_public_key.pem");
/// The APIv3 key of wechatpay-java's tests (V7, V8).
const JAVA_TEST_APIV3_KEY: &[u8] = b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn docs_merchant() -> Merchant {
    Merchant::new(DOCS_MCHID, DOCS_SERIAL, SigningKey::from_pem(DOCS_MERCHANT_KEY).expect("docs key"))
        .expect("docs merchant")
}

fn key_error(result: Result<impl std::fmt::Debug, PayCryptoError>) -> String {
    match result {
        Err(PayCryptoError::Key(message)) => message,
        other => panic!("expected a key error, got {other:?}"),
    }
}

// --- V1: the request signature -------------------------------------------------------

const V1_BODY: &str = r#"{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"Image形象店-深圳腾大-QQ公仔","out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php","amount":{"total":100,"currency":"CNY"},"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}}"#;
const V1_SIGNATURE: &str = "jnks4dlrPw3ZX+ozVvSK39oa0t7OMBsg83BHAwd8BRdUFiVaQNTLTvci+wURgP1OQBbKYhFGvt7iqYpDSTQkp7Uq1sltaQKyncCyrA1g88m5bsKERQfPyT0ahSwKTYJ1CAn9QiJuSJRq1QsQs07eehbU/k9BCS51jTyc1Jpsi2H77HF9f/BnjXAOP3/sPObg6V5Ee4EzwLox684hhuMuIwHo7D8KFk3LIHOKDcNI4It1aCXydFWNpNK+SG86VUDe5kwoDpw4Ulqfu9z8OFDGbDs9TCxEv8iqQzbpxOlEVoOe2kalSYM5kApQb3nZcxdUtoE0liJGW3RGUNE0t4v01A==";

#[test]
fn v1_authorization_header_matches_the_official_signature() {
    let header = docs_merchant()
        .authorization_at(
            "POST",
            "/v3/pay/transactions/jsapi",
            V1_BODY.as_bytes(),
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        )
        .expect("signs");
    assert_eq!(
        header,
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900007291\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",\
             signature=\"{V1_SIGNATURE}\",timestamp=\"1554208460\",serial_no=\"{DOCS_SERIAL}\""
        )
    );
}

#[test]
fn authorization_signs_the_exact_body_and_query() {
    let merchant = docs_merchant();
    let public = SigningKey::from_pem(DOCS_MERCHANT_KEY).expect("docs key").verifying_key();
    let path = "/v3/pay/transactions/out-trade-no/ABC123?mchid=1900007291";
    let header = merchant.authorization("GET", path, b"").expect("signs");
    let field = |name: &str| {
        let start = header.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
        header[start..].split('"').next().expect(name).to_string()
    };
    let (nonce, timestamp) = (field("nonce_str"), field("timestamp"));
    assert_eq!(nonce.len(), 32, "nonce of 32 characters");
    assert!((timestamp.parse::<i64>().expect("seconds") - unix_now()).abs() < 60, "Unix seconds, not ms");
    let signature = base64::engine::general_purpose::STANDARD.decode(field("signature")).expect("base64");
    let message = format!("GET\n{path}\n{timestamp}\n{nonce}\n\n");
    assert!(public.verify(message.as_bytes(), &signature), "GET signs an empty body line");
    assert!(!public.verify(format!("GET\n{path}\n{timestamp}\n{nonce}\n").as_bytes(), &signature));
    assert_ne!(merchant.authorization("GET", path, b"").expect("signs"), header, "a fresh nonce each time");
}

#[test]
fn values_that_would_break_the_header_are_refused() {
    let key = || SigningKey::from_pem(DOCS_MERCHANT_KEY).expect("docs key");
    assert!(matches!(Merchant::new("19000\"07291", DOCS_SERIAL, key()), Err(PayCryptoError::Sign(_))));
    assert!(matches!(Merchant::new(DOCS_MCHID, "", key()), Err(PayCryptoError::Sign(_))));
    let merchant = docs_merchant();
    assert!(merchant.authorization_at("GET", "/v3/x", b"", 1, "a,b").is_err());
    assert!(merchant.authorization_at("GET", "v3/x", b"", 1, "nonce").is_err());
    assert!(merchant.authorization_at("GET", "/v3/x\nHost: evil", b"", 1, "nonce").is_err());
    assert!(merchant.authorization_at("GET", "/v3/x?q=a b", b"", 1, "nonce").is_err());
}

// --- V2: paySign and the wx.requestPayment parameters ---------------------------------

const V2_PAY_SIGN: &str = "mI35pfNEQV6777ke/1T+LJLQDNTm7yeoUJH+j/adPGhmCCi0PbgkvYQTRcXH0uibcLVtvFLdGLpmoYO9FV6lBBsTAjuhh5YOvQi0e2g3e0yytitiNET9FEuqM0pjnKfRW4K6LIZDdbWJv9KhZUx3DrJa5TL7OJ7VdADVivxVySIlPVKjGwuCXzuXSJes0UcILgWQUMyha5/3nYofuHtS7r+KYyMuxD+oJ9VM1Qdxk4UIG59CP5Y3wtYIFybyF3bdu1caHTRRX+DLyMXyYA/IrTmiW01c4RPjpHBX5Dk1sZyY1zVsWNsvMHr2e1NTWtBxKJ+qk5N61J7caYoepHFaxw==";

#[test]
fn v2_payment_params_match_the_official_pay_sign() {
    let params = docs_merchant()
        .payment_params_at(
            "wx2421b1c4370ec43b",
            "wx201410272009395522657a690389285100",
            1554208460,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        )
        .expect("signs");
    let json = serde_json::to_value(&params).expect("serialises");
    assert_eq!(
        json,
        serde_json::json!({
            "timeStamp": "1554208460",
            "nonceStr": "593BEC0C930BF1AFEB40B4A08C8FB242",
            "package": "prepay_id=wx201410272009395522657a690389285100",
            "signType": "RSA",
            "paySign": V2_PAY_SIGN,
        })
    );
}

#[test]
fn payment_params_now_verify_with_the_merchant_public_key() {
    let public = SigningKey::from_pem(DOCS_MERCHANT_KEY).expect("docs key").verifying_key();
    let params = docs_merchant().payment_params("wx2421b1c4370ec43b", "wx2014").expect("signs");
    let message = sign::pay_sign_message("wx2421b1c4370ec43b", &params.time_stamp, &params.nonce_str, &params.package);
    let signature = base64::engine::general_purpose::STANDARD.decode(&params.pay_sign).expect("base64");
    assert!(public.verify(message.as_bytes(), &signature));
    assert!(!public.verify(message.replace("wx2421b1c4370ec43b", "wx0000000000000000").as_bytes(), &signature));
}

// --- V4: verifying WeChat Pay's signature -----------------------------------------------

const V4_TIMESTAMP: &str = "1722850421";
const V4_NONCE: &str = "d824f2e086d3c1df967785d13fcd22ef";
const V4_BODY: &str = r#"{"code_url":"weixin://wxpay/bizpayurl?pr=JyC91EIz1"}"#;
const V4_SIGNATURE: &str = "mfI1CPqvBrgcXfgXMFjdNIhBf27ACE2YyeWsWV9ZI7T7RU0vHvbQpu9Z32ogzc+k8ZC5n3kz7h70eWKjgqNdKQF0eRp8mVKlmfzMLBVHbssB9jEZEDXThOX1XFqX7s7ymia1hoHQxQagPGzkdWxtlZPZ4ZPvr1RiqkgAu6Is8MZgXXrRoBKqjmSdrP1N7uxzJ/cjfSiis9FiLjuADoqmQ1P7p2N876YPAol7Rn0+GswwAwxldbdLrmVSjfytfSBJFqTMHn4itojgxSWWN1byuckQt8hSTEv/Lg97QoeGniYP17T80pJeQyL3b+295FPHSO2AtvCgyIbKMZ0BALilAA==";
const V4_NOW: i64 = 1722850421 + 2;

fn docs_verifier() -> PayVerifier {
    PayVerifier::new(DOCS_PAY_KEY_ID, VerifyingKey::from_pem(DOCS_PAY_PUBLIC_KEY).expect("docs public key"))
}

fn v4() -> Signed<'static> {
    Signed {
        timestamp: V4_TIMESTAMP,
        nonce: V4_NONCE,
        signature: V4_SIGNATURE,
        serial: DOCS_PAY_KEY_ID,
        body: V4_BODY.as_bytes(),
    }
}

#[test]
fn v4_official_response_signature_verifies() {
    assert_eq!(docs_verifier().verify(&v4(), V4_NOW), Ok(()));
}

#[test]
fn v4_any_one_byte_change_fails() {
    let verifier = docs_verifier();
    for at in 0..V4_BODY.len() {
        let mut body = V4_BODY.as_bytes().to_vec();
        body[at] ^= 0x01;
        let signed = Signed { body: &body, ..v4() };
        assert_eq!(verifier.verify(&signed, V4_NOW), Err(PayCryptoError::BadSignature), "body byte {at}");
    }
    let later = "1722850422";
    assert_eq!(verifier.verify(&Signed { timestamp: later, ..v4() }, V4_NOW), Err(PayCryptoError::BadSignature));
    let nonce = "d824f2e086d3c1df967785d13fcd22ee";
    assert_eq!(verifier.verify(&Signed { nonce, ..v4() }, V4_NOW), Err(PayCryptoError::BadSignature));
    let body_with_newline = format!("{V4_BODY}\n");
    let signed = Signed { body: body_with_newline.as_bytes(), ..v4() };
    assert_eq!(verifier.verify(&signed, V4_NOW), Err(PayCryptoError::BadSignature), "raw bytes, not trimmed");
    let mut signature = base64::engine::general_purpose::STANDARD.decode(V4_SIGNATURE).expect("base64");
    signature[100] ^= 0x01;
    let signature = b64(&signature);
    assert_eq!(verifier.verify(&Signed { signature: &signature, ..v4() }, V4_NOW), Err(PayCryptoError::BadSignature));
}

#[test]
fn v4_wrong_serial_is_refused_before_the_signature() {
    let serial = "PUB_KEY_ID_0000000000000024101100397200000007";
    let result = docs_verifier().verify(&Signed { serial, ..v4() }, V4_NOW);
    assert_eq!(result, Err(PayCryptoError::UnknownSerial));
    assert!(result.unwrap_err().is_untrusted());
}

#[test]
fn v4_timestamp_window_is_five_minutes_both_ways() {
    let verifier = docs_verifier();
    let ts = 1722850421;
    assert_eq!(verifier.verify(&v4(), ts + WINDOW_SECONDS), Ok(()));
    assert_eq!(verifier.verify(&v4(), ts - WINDOW_SECONDS), Ok(()));
    let old = verifier.verify(&v4(), ts + 301);
    assert_eq!(old, Err(PayCryptoError::TimestampSkew { skew: 301 }));
    assert_eq!(old.unwrap_err().to_string(), "Wechatpay-Timestamp is 301 s in the past, more than 300 s off");
    let future = verifier.verify(&v4(), ts - 301);
    assert_eq!(future, Err(PayCryptoError::TimestampSkew { skew: -301 }));
    assert!(future.unwrap_err().to_string().contains("301 s in the future"));
}

#[test]
fn malformed_headers_are_refused_as_untrusted() {
    let verifier = docs_verifier();
    for timestamp in ["", "-1722850421", " 1722850421", "1722850421000", "17228504.1", "١٧٢٢"] {
        let result = verifier.verify(&Signed { timestamp, ..v4() }, V4_NOW);
        assert!(matches!(result, Err(PayCryptoError::BadHeader(_))), "{timestamp:?}: {result:?}");
    }
    for nonce in ["", "d824f2e0\n86d3c1df", "d824 f2e0", &"n".repeat(129)] {
        let result = verifier.verify(&Signed { nonce, ..v4() }, V4_NOW);
        assert!(matches!(result, Err(PayCryptoError::BadHeader(_))), "{nonce:?}: {result:?}");
    }
    let result = verifier.verify(&Signed { signature: "not base64!", ..v4() }, V4_NOW);
    assert_eq!(result, Err(PayCryptoError::BadHeader("Wechatpay-Signature is not base64")));
    assert_eq!(verifier.verify(&Signed { signature: "", ..v4() }, V4_NOW), Err(PayCryptoError::BadSignature));
}

#[test]
fn signature_probes_are_detected() {
    let probe = format!("{PROBE_PREFIX}{V4_SIGNATURE}");
    let result = docs_verifier().verify(&Signed { signature: &probe, ..v4() }, V4_NOW);
    assert_eq!(result, Err(PayCryptoError::SignatureProbe));
    assert!(result.unwrap_err().is_untrusted());
}

#[test]
fn a_second_key_is_chosen_by_serial() {
    let mut verifier = PayVerifier::new("PUB_KEY_ID_fake", VerifyingKey::from_pem(FAKE_PLATFORM_PUBLIC_KEY).unwrap());
    assert_eq!(verifier.verify(&v4(), V4_NOW), Err(PayCryptoError::UnknownSerial));
    verifier.add(DOCS_PAY_KEY_ID, VerifyingKey::from_pem(DOCS_PAY_PUBLIC_KEY).unwrap());
    assert_eq!(verifier.verify(&v4(), V4_NOW), Ok(()));
    let wrong_key = Signed { serial: "PUB_KEY_ID_fake", ..v4() };
    assert_eq!(verifier.verify(&wrong_key, V4_NOW), Err(PayCryptoError::BadSignature));
}

// --- The fake WeChat Pay's platform key: sign, then verify ------------------------------

#[test]
fn fake_platform_key_round_trip() {
    let key = SigningKey::from_pem(FAKE_PLATFORM_KEY).expect("fake platform key");
    assert_eq!(key.bits(), 2048);
    let body = br#"{"prepay_id":"wx2014"}"#;
    let (timestamp, nonce) = ("1796202600", "0123456789abcdef0123456789abcdef");
    let signature = key.sign_base64(&verify::response_message(timestamp, nonce, body)).expect("signs");
    let public = VerifyingKey::from_pem(FAKE_PLATFORM_PUBLIC_KEY).expect("fake platform public key");
    assert_eq!(public, key.verifying_key(), "the committed public key is the private key's");
    let verifier = PayVerifier::new("PUB_KEY_ID_fake", public);
    let signed = Signed { timestamp, nonce, signature: &signature, serial: "PUB_KEY_ID_fake", body };
    assert_eq!(verifier.verify(&signed, 1796202600), Ok(()));
    let tampered = Signed { body: br#"{"prepay_id":"wx2015"}"#, ..signed };
    assert_eq!(verifier.verify(&tampered, 1796202600), Err(PayCryptoError::BadSignature));
    assert_eq!(
        docs_verifier().verify(&Signed { serial: DOCS_PAY_KEY_ID, ..signed }, 1796202600),
        Err(PayCryptoError::BadSignature)
    );
}

#[test]
fn a_3072_bit_key_signs_and_verifies() {
    let key = SigningKey::from_pem(include_str!("testdata/rsa3072_key.pem")).expect("3072-bit key");
    let public = VerifyingKey::from_pem(include_str!("testdata/rsa3072_public_key.pem")).expect("3072 public");
    assert_eq!((key.bits(), public.bits()), (3072, 3072));
    let signature = base64::engine::general_purpose::STANDARD.decode(key.sign_base64(b"m").unwrap()).unwrap();
    assert_eq!(signature.len(), 384);
    assert!(public.verify(b"m", &signature));
    assert!(!public.verify(b"n", &signature));
}

// --- V7, V8: AEAD_AES_256_GCM resources -------------------------------------------------

fn java_key() -> ApiV3Key {
    ApiV3Key::new(JAVA_TEST_APIV3_KEY).expect("32 bytes")
}

fn v7() -> Resource {
    Resource {
        algorithm: "AEAD_AES_256_GCM".into(),
        ciphertext: "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=".into(),
        associated_data: Some("associatedData".into()),
        nonce: "uluk4a9R25RW".into(),
        original_type: None,
    }
}

#[test]
fn v7_decrypts_to_message() {
    assert_eq!(v7().decrypt(&java_key()).expect("decrypts"), b"message");
}

#[test]
fn v8_decrypts_the_platform_certificate() {
    let resource = Resource {
        algorithm: "AEAD_AES_256_GCM".into(),
        ciphertext: include_str!("testdata/v8_certificate_ciphertext.txt").trim().into(),
        associated_data: Some("certificate".into()),
        nonce: "14b16c03dc1b".into(),
        original_type: None,
    };
    let plaintext = String::from_utf8(resource.decrypt(&java_key()).expect("decrypts")).expect("PEM text");
    let block = pem::decode(&plaintext).expect("one PEM block");
    assert_eq!(block.label, "CERTIFICATE");
    let serial = [0x5d, 0xea, 0x10, 0xef, 0x55, 0x87, 0x7e, 0x3c, 0xf6, 0xc3, 0x32, 0x55];
    assert!(block.der.windows(serial.len()).any(|w| w == serial), "serial 5DEA10EF55877E3CF6C3...");
    assert!(block.der.windows(15).any(|w| w == b"Tenpay.com sign"), "CN Tenpay.com sign");
}

#[test]
fn tampered_resources_do_not_decrypt() {
    let key = java_key();
    let raw = base64::engine::general_purpose::STANDARD.decode(v7().ciphertext).expect("base64");
    let tag_start = raw.len() - 16;
    for at in [0, tag_start - 1, tag_start, raw.len() - 1] {
        let mut changed = raw.clone();
        changed[at] ^= 0x01;
        let resource = Resource { ciphertext: b64(&changed), ..v7() };
        assert!(matches!(resource.decrypt(&key), Err(PayCryptoError::Decrypt(_))), "byte {at}");
    }
    let aad = Resource { associated_data: Some("associatedDatb".into()), ..v7() };
    assert!(matches!(aad.decrypt(&key), Err(PayCryptoError::Decrypt(_))));
    let no_aad = Resource { associated_data: None, ..v7() };
    assert!(matches!(no_aad.decrypt(&key), Err(PayCryptoError::Decrypt(_))));
    let nonce = Resource { nonce: "uluk4a9R25RX".into(), ..v7() };
    assert!(matches!(nonce.decrypt(&key), Err(PayCryptoError::Decrypt(_))));
    let wrong_key = ApiV3Key::new(b"b7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb").unwrap();
    assert!(matches!(v7().decrypt(&wrong_key), Err(PayCryptoError::Decrypt(_))));
}

#[test]
fn malformed_resources_name_the_problem() {
    let key = java_key();
    let message = |r: Resource| r.decrypt(&key).unwrap_err().to_string();
    assert!(message(Resource { algorithm: "AEAD_AES_128_GCM".into(), ..v7() }).contains("algorithm"));
    assert!(message(Resource { nonce: "uluk4a9R25R".into(), ..v7() }).contains("12 bytes"));
    assert!(message(Resource { nonce: "uluk4a9R25RWx".into(), ..v7() }).contains("12 bytes"));
    assert!(message(Resource { ciphertext: "ulwS*".into(), ..v7() }).contains("not base64"));
    assert!(message(Resource { ciphertext: b64(&[0; 15]), ..v7() }).contains("shorter than its tag"));
    let decrypt_error = v7().decrypt(&ApiV3Key::new(&[7; 32]).unwrap()).unwrap_err();
    assert!(!decrypt_error.is_untrusted(), "a notification that does not decrypt is a 400, not a 401");
}

#[test]
fn encrypt_then_decrypt_round_trips_and_parses_from_json() {
    let key = java_key();
    let resource = Resource::encrypt(&key, "transaction", "transaction", br#"{"trade_state":"SUCCESS"}"#).unwrap();
    assert_eq!(resource.nonce.len(), 12);
    let json = serde_json::to_string(&resource).expect("serialises");
    let parsed: Resource = serde_json::from_str(&json).expect("parses");
    assert_eq!(parsed.decrypt(&key).expect("decrypts"), br#"{"trade_state":"SUCCESS"}"#);
    let wechat: Resource = serde_json::from_str(
        r#"{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=","associated_data":"associatedData","nonce":"uluk4a9R25RW"}"#,
    )
    .expect("WeChat's shape");
    assert_eq!(wechat.decrypt(&key).expect("decrypts"), b"message");
    assert!(verify::encrypt(&key, "short", "", b"x").is_err());
}

// --- Keys: what start-up refuses, and how it says so ----------------------------------

#[test]
fn apiv3_key_must_be_exactly_32_bytes() {
    assert!(ApiV3Key::new(&[b'k'; 32]).is_ok());
    assert_eq!(key_error(ApiV3Key::new(&[b'k'; 31])), "the APIv3 key must be exactly 32 bytes (it is 31 bytes)");
    assert!(key_error(ApiV3Key::new(&[b'k'; 33])).contains("it is 33 bytes"));
    assert!(key_error(ApiV3Key::new(b"")).contains("it is 0 bytes"));
}

#[test]
fn pkcs1_private_key_gets_conversion_advice() {
    let pkcs1 = DOCS_MERCHANT_KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY");
    let message = key_error(SigningKey::from_pem(&pkcs1));
    assert!(message.contains("PKCS#1") && message.contains("openssl pkcs8 -topk8 -nocrypt"), "{message}");
}

#[test]
fn private_key_refusals_are_clear() {
    let encrypted = DOCS_MERCHANT_KEY.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY");
    assert!(key_error(SigningKey::from_pem(&encrypted)).contains("is encrypted"));
    assert!(key_error(SigningKey::from_pem(DOCS_PAY_PUBLIC_KEY)).contains("not a private key"));
    let small = key_error(SigningKey::from_pem(include_str!("testdata/rsa1024_key.pem")));
    assert!(small.contains("1024-bit") && small.contains("2048"), "{small}");
    let ec = key_error(SigningKey::from_pem(include_str!("testdata/ec_p256_key.pem")));
    assert!(ec.contains("not an RSA key"), "{ec}");
    let bad_base64 = DOCS_MERCHANT_KEY.replacen("MIIE", "MI*E", 1);
    assert!(key_error(SigningKey::from_pem(&bad_base64)).contains("not base64"));
    let lines: Vec<&str> = DOCS_MERCHANT_KEY.lines().collect();
    let truncated = [&lines[..10], &lines[lines.len() - 1..]].concat().join("\n");
    assert!(key_error(SigningKey::from_pem(&truncated)).contains("truncated"), "{truncated}");
    assert!(key_error(SigningKey::from_pem("")).contains("empty"));
}

#[test]
fn public_key_refusals_are_clear() {
    let rsa_public = DOCS_PAY_PUBLIC_KEY.replace("PUBLIC KEY", "RSA PUBLIC KEY");
    assert!(key_error(VerifyingKey::from_pem(&rsa_public)).contains("-RSAPublicKey_in"));
    let cert = DOCS_PAY_PUBLIC_KEY.replace("PUBLIC KEY", "CERTIFICATE");
    assert!(key_error(VerifyingKey::from_pem(&cert)).contains("is a certificate"));
    assert!(key_error(VerifyingKey::from_pem(DOCS_MERCHANT_KEY)).contains("is a private key"));
    let lines: Vec<&str> = DOCS_PAY_PUBLIC_KEY.lines().collect();
    let truncated = [&lines[..4], &lines[lines.len() - 1..]].concat().join("\n");
    assert!(key_error(VerifyingKey::from_pem(&truncated)).contains("truncated"));
    let garbled = DOCS_PAY_PUBLIC_KEY.replacen("MIIBIjAN", "MIIBIjAA", 1);
    assert!(key_error(VerifyingKey::from_pem(&garbled)).starts_with("the public key"));
}

#[test]
fn no_message_or_debug_output_holds_key_material() {
    let key = SigningKey::from_pem(DOCS_MERCHANT_KEY).expect("docs key");
    assert_eq!(format!("{key:?}"), "SigningKey(2048-bit RSA, ***)");
    assert_eq!(format!("{:?}", java_key()), "ApiV3Key(***)");
    assert!(!format!("{:?}", docs_merchant()).contains("MII"));
    let body_line = DOCS_MERCHANT_KEY.lines().nth(5).expect("a body line");
    let mut damaged: Vec<String> = Vec::new();
    for (n, replace) in [(3, "!"), (20, "@"), (26, "=")] {
        let mut lines: Vec<String> = DOCS_MERCHANT_KEY.lines().map(String::from).collect();
        lines[n].replace_range(4..5, replace);
        damaged.push(lines.join("\n"));
    }
    for text in damaged {
        let message = key_error(SigningKey::from_pem(&text));
        assert!(!message.contains(&body_line[..8]) && !message.contains("MII"), "{message}");
    }
}

mod never_panic {
    use proptest::prelude::*;

    use super::super::{der, pem, SigningKey, VerifyingKey};

    fn wrap(label: &str, bytes: &[u8]) -> String {
        let body = super::b64(bytes);
        format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn der_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = der::spki_rsa_public_key(&bytes);
            let _ = der::pkcs1_rsa_public_key(&bytes);
            let _ = der::pkcs8_rsa_modulus_bits(&bytes);
        }

        #[test]
        fn pem_and_keys_never_panic_on_text(text in "\\PC{0,400}") {
            let _ = pem::decode(&text);
            let _ = SigningKey::from_pem(&text);
            let _ = VerifyingKey::from_pem(&text);
        }

        #[test]
        fn keys_never_panic_on_wrapped_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert!(SigningKey::from_pem(&wrap("PRIVATE KEY", &bytes)).is_err());
            prop_assert!(VerifyingKey::from_pem(&wrap("PUBLIC KEY", &bytes)).is_err());
        }

        #[test]
        fn damaged_real_keys_never_panic(at in 0usize..1300, byte in any::<u8>()) {
            let mut der = pem::decode(super::DOCS_MERCHANT_KEY).expect("docs key").der;
            let at = at % der.len();
            der[at] = byte;
            let _ = SigningKey::from_pem(&wrap("PRIVATE KEY", &der));
            let mut public = pem::decode(super::DOCS_PAY_PUBLIC_KEY).expect("docs public key").der;
            let at = at % public.len();
            public[at] = byte;
            let _ = VerifyingKey::from_pem(&wrap("PUBLIC KEY", &public));
        }
    }
}
