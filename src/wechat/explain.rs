//! Plain words for WeChat's token-API errors, for operators (`wxlogin check --live`).
//! The one table of errcode -> explanation.

use super::{strip_rid, WeChatError};

/// What an errcode from the token API (`cgi-bin/token`, `cgi-bin/stable_token`) means
/// for whoever configured wxlogin; `errmsg` supplies details such as the refused IP.
pub fn token_errcode(errcode: i64, errmsg: &str) -> Option<String> {
    let words = match errcode {
        -1 => "WeChat is busy (-1 system error) and stayed busy after the retries; try again in a minute".into(),
        40001 | 40125 => format!(
            "wrong AppSecret ({errcode}): copy the current AppSecret from the mini-program admin console \
             (开发管理 → 开发设置) into the app's secret (or WXLOGIN_SECRET_<NAME>)"
        ),
        40002 => "invalid grant_type (40002): this is a wxlogin bug; please report it".into(),
        40013 => "wrong AppID (40013): the app's appid is not a mini-program's AppID (it starts with wx)".into(),
        40164 => {
            let ip = refused_ip(errmsg).unwrap_or("this server's address");
            format!(
                "this server's IP is not on the whitelist (40164): add this server's IP ({ip}) to the API IP \
                 whitelist in the mini-program admin console (开发管理 → 开发设置 → IP白名单)"
            )
        }
        40243 => "the AppSecret is frozen (40243): unfreeze or reset it in the mini-program admin console".into(),
        41002 | 41004 => format!("the appid or secret is missing ({errcode}): set both for the app"),
        45009 => "the daily quota of the token API is used up (45009): wait until tomorrow, or reset the quota in \
                  the admin console; check that nothing else fetches tokens for this app"
            .into(),
        50004 | 50007 => {
            format!("WeChat does not let this account use access tokens ({errcode}: account restricted or frozen)")
        }
        89501 | 89503 => format!(
            "this server's IP is waiting for the mini-program administrator's confirmation ({errcode}): \
             approve it in the WeChat notification or the admin console, then try again"
        ),
        89506 | 89507 => {
            format!("this server's IP was rejected by the administrator and is blocked for a while ({errcode})")
        }
        _ => return None,
    };
    Some(words)
}

/// A token-fetch failure in plain words; `api_base` is named for network problems.
pub fn token_failure(e: &WeChatError, api_base: &str) -> String {
    match e {
        WeChatError::Api { errcode, errmsg } => token_errcode(*errcode, errmsg)
            .unwrap_or_else(|| format!("WeChat answered errcode {errcode}: {}", strip_rid(errmsg))),
        WeChatError::Timeout => {
            format!("WeChat did not answer in time at {api_base} (wechat.timeout_ms); check the network path")
        }
        WeChatError::Transport(m) => {
            format!("WeChat could not be reached at {api_base} ({m}); check DNS, firewall and proxy")
        }
        WeChatError::BadReply(m) => format!("{api_base} did not answer like WeChat ({m}); check wechat.api_base"),
        WeChatError::AccessToken(inner) => token_failure(inner, api_base),
    }
}

/// The IPv4 address in "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist".
fn refused_ip(errmsg: &str) -> Option<&str> {
    let rest = &errmsg[errmsg.find("invalid ip ")? + "invalid ip ".len()..];
    rest.split([' ', ',']).next().filter(|ip| !ip.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(errcode: i64, errmsg: &str) -> WeChatError {
        WeChatError::Api { errcode, errmsg: errmsg.into() }
    }

    #[test]
    fn every_known_errcode_has_plain_words() {
        let base = "https://api.weixin.qq.com";
        assert!(token_failure(&api(40013, "invalid appid"), base).contains("wrong AppID"));
        assert!(token_failure(&api(40125, "invalid appsecret"), base).contains("wrong AppSecret"));
        assert!(token_failure(&api(40001, "invalid credential"), base).contains("wrong AppSecret"));
        let ip = token_failure(&api(40164, "invalid ip 1.2.3.4 ipv6 ::ffff:1.2.3.4, not in whitelist rid: x"), base);
        assert!(ip.contains("(1.2.3.4)") && ip.contains("IP白名单"), "{ip}");
        assert!(token_failure(&api(45009, "reach max"), base).contains("daily quota"));
        assert!(token_failure(&api(40243, ""), base).contains("frozen"));
        assert!(token_failure(&api(89503, ""), base).contains("confirmation"));
        assert!(token_failure(&api(-1, "system error"), base).contains("busy"));
        assert!(token_failure(&WeChatError::Timeout, base).contains(base));
        assert!(token_failure(&WeChatError::Transport("connection refused".into()), base).contains(base));
        assert_eq!(token_failure(&api(12345, "odd, rid: 99"), base), "WeChat answered errcode 12345: odd");
    }

    #[test]
    fn the_refused_ip_is_taken_from_the_errmsg() {
        assert_eq!(refused_ip("invalid ip 10.0.0.7 ipv6 ::ffff:10.0.0.7, not in whitelist"), Some("10.0.0.7"));
        assert_eq!(refused_ip("invalid ip 10.0.0.7, not in whitelist"), Some("10.0.0.7"));
        assert_eq!(refused_ip("something else"), None);
    }
}
