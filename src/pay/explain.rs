//! Plain words for WeChat Pay failures, for operators (`wxlogin check --live`, `wxlogin
//! orders sync`). The one table of WeChat Pay code -> explanation; codes and statuses as
//! research/wechat-pay.md §2.4 and the fake WeChat Pay (src/fake_wechat/README.md) list them.

use super::client::FetchError;
use super::{CertificatesError, PayError};

/// What a refusal `code` means for whoever configured `[pay]`, when there is more to say
/// than the code itself.
pub fn refusal(code: &str) -> Option<&'static str> {
    Some(match code {
        "SIGN_ERROR" => {
            "WeChat Pay did not accept this request's signature (SIGN_ERROR): pay.merchant_key_file (or \
             WXLOGIN_PAY_MERCHANT_KEY) is not the private key of the merchant API certificate whose serial is \
             pay.merchant_serial, or the serial is not that certificate's (商户平台 → 账户中心 → API安全 → \
             API证书); a clock more than 5 minutes off is refused the same way: check this server's time"
        }
        "MCH_NOT_EXISTS" => {
            "WeChat Pay knows no merchant with this pay.mchid (MCH_NOT_EXISTS): copy the 商户号 from 商户平台 \
             → 账户中心 → 商户信息"
        }
        "NO_AUTH" => {
            "the merchant may not use this API (NO_AUTH): JSAPI / mini-program payment must be enabled for \
             pay.mchid in 商户平台 → 产品中心"
        }
        "APPID_MCHID_NOT_MATCH" => {
            "the app's appid is not bound to pay.mchid (APPID_MCHID_NOT_MATCH): bind it in 商户平台 → 产品中心 → \
             AppID账号管理, and confirm it in the mini-program's admin console"
        }
        "INVALID_REQUEST" | "PARAM_ERROR" => {
            "WeChat Pay refused the request's form (PARAM_ERROR / INVALID_REQUEST): check pay.mchid and \
             pay.api_base; if they are right, this is a wxlogin bug: please report it"
        }
        "SYSTEM_ERROR" | "RATELIMIT_EXCEEDED" | "FREQUENCY_LIMITED" => {
            "WeChat Pay is busy or limiting this merchant's calls, and stayed so after the retries; try again \
             in a minute"
        }
        _ => return None,
    })
}

/// A failed call in plain words; `api_base` (pay.api_base) is named for network problems.
pub fn failure(e: &PayError, api_base: &str) -> String {
    match e {
        PayError::Refused { status, code } => match refusal(code) {
            Some(words) => words.to_string(),
            None => format!("WeChat Pay refused the request (HTTP {status}, {code})"),
        },
        PayError::Unverified => format!(
            "the answer from {api_base} did not verify with the configured WeChat Pay public key (or a \
             fetched platform certificate): pay.public_key_file is not the key whose id is pay.public_key_id, \
             or the id is wrong (商户平台 → 账户中心 → API安全 → 微信支付公钥), or pay.api_base is not WeChat Pay"
        ),
        PayError::Timeout => {
            format!("WeChat Pay did not answer in time at {api_base} (wechat.timeout_ms); check the network path")
        }
        PayError::Unreachable => {
            format!("WeChat Pay could not be reached at {api_base}; check DNS, firewall and proxy")
        }
        PayError::Unreadable => {
            format!("{api_base} answered, signed, but not like WeChat Pay; check pay.api_base")
        }
        PayError::Invalid(what) => format!("the request could not be made ({what}); this is a wxlogin bug"),
    }
}

/// A failed platform certificate fetch (`pay.platform_certificates`) in plain words.
pub fn certificates_failure(e: &FetchError, api_base: &str) -> String {
    match e {
        FetchError::Certificates(CertificatesError::Decrypt) => format!(
            "the platform certificates from {api_base} do not decrypt with pay.apiv3_key (or \
             WXLOGIN_PAY_APIV3_KEY): it is not this merchant's APIv3 key (商户平台 → 账户中心 → API安全 → \
             APIv3密钥), or pay.api_base is not WeChat Pay"
        ),
        FetchError::Certificates(CertificatesError::Invalid(why)) => {
            format!("{api_base} answered /v3/certificates, but not with usable certificates: {why}")
        }
        FetchError::Pay(PayError::Unverified) => format!(
            "the /v3/certificates answer from {api_base} did not verify with any key it carried or that is \
             configured: if pay.public_key_file is set, it (and pay.public_key_id) may be wrong; otherwise \
             pay.api_base is not WeChat Pay"
        ),
        FetchError::Pay(e) => failure(e, api_base),
        FetchError::UnverifiedRefusal { status, code } => format!(
            "{api_base} refused the request (HTTP {status}, {code}; unverified, as no key is held before the first \
             fetch): {}",
            refusal(code).unwrap_or("see WeChat Pay's code")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> PayError {
        PayError::Refused { status, code: code.into() }
    }

    #[test]
    fn every_known_code_has_plain_words() {
        let base = "https://api.mch.weixin.qq.com";
        let sign = failure(&refused(401, "SIGN_ERROR"), base);
        assert!(sign.contains("pay.merchant_key_file") && sign.contains("pay.merchant_serial"), "{sign}");
        assert!(failure(&refused(400, "MCH_NOT_EXISTS"), base).contains("pay.mchid"));
        assert!(failure(&refused(403, "NO_AUTH"), base).contains("JSAPI"));
        assert!(failure(&refused(400, "APPID_MCHID_NOT_MATCH"), base).contains("bound"));
        assert!(failure(&refused(500, "SYSTEM_ERROR"), base).contains("busy"));
        assert!(failure(&PayError::Unverified, base).contains("pay.public_key_id"));
        assert!(failure(&PayError::Timeout, base).contains(base));
        assert!(failure(&PayError::Unreachable, base).contains(base));
        assert!(failure(&PayError::Unreadable, base).contains("pay.api_base"));
        assert_eq!(failure(&refused(418, "ODD"), base), "WeChat Pay refused the request (HTTP 418, ODD)");
        let decrypt = certificates_failure(&FetchError::Certificates(CertificatesError::Decrypt), base);
        assert!(decrypt.contains("pay.apiv3_key"), "{decrypt}");
        let sign = certificates_failure(&FetchError::Pay(refused(401, "SIGN_ERROR")), base);
        assert!(sign.contains("pay.merchant_key_file"), "{sign}");
    }
}
