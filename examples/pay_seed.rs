//! The WeChat Pay rows of the benchmark (`bench/run`).
//!
//! `pay_seed orders DB COUNT` adds COUNT unpaid `vip30` orders (990 fen, `Wbench0000000001`
//! ...), one for each of the first COUNT users `seed` made, as `POST /v1/pay/orders` would
//! have.
//!
//! `pay_seed notices FILE COUNT APPID` writes the TRANSACTION.SUCCESS notification of each
//! of those orders as WeChat Pay sends it: the transaction encrypted with the fake WeChat
//! Pay's APIv3 key and the whole signed with its platform key (its fixed test keys), one
//! per line, `TIMESTAMP<TAB>NONCE<TAB>SIGNATURE<TAB>SERIAL<TAB>BODY`, for `bench/notify.lua`.
//! Made just before the run: wxlogin refuses a signature more than 5 minutes old.

use std::io::Write;

use serde_json::json;
use wxlogin::fake_wechat as fake;
use wxlogin::pay::verify::response_message;
use wxlogin::pay::{rfc3339, ApiV3Key, Resource, SigningKey};
use wxlogin::store::{self, NewOrder, Store};

/// The fake WeChat Pay's platform private key (public test material, like its other keys).
const PLATFORM_KEY_PEM: &str = include_str!("../src/pay/testdata/fake_wechatpay_platform_key.pem");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["orders", db, count] => orders(db, count.parse()?),
        ["notices", file, count, appid] => notices(file, count.parse()?, appid),
        _ => Err("usage: pay_seed orders DB COUNT | pay_seed notices FILE COUNT APPID".into()),
    }
}

fn out_trade_no(i: u32) -> String {
    format!("Wbench{i:010}")
}

/// `seed`'s user `i` (ids from 1, in order).
fn openid(i: u32) -> String {
    format!("oBench{i:022}")
}

fn orders(db: &str, count: u32) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(db.as_ref())?;
    let now = store::now();
    for i in 0..count {
        let (no, openid) = (out_trade_no(i), openid(i));
        store.create_order(&NewOrder {
            out_trade_no: &no,
            app: "main",
            user_id: i64::from(i) + 1,
            openid: &openid,
            product: Some("vip30"),
            description: "VIP, 30 days",
            amount: 990,
            attach: None,
            created_at: now,
            expires_at: now + 7200,
        })?;
    }
    store.checkpoint()?;
    eprintln!("added {count} unpaid orders to {db}");
    Ok(())
}

fn notices(file: &str, count: u32, appid: &str) -> Result<(), Box<dyn std::error::Error>> {
    let key = ApiV3Key::new(fake::TEST_APIV3_KEY.as_bytes())?;
    let signer = SigningKey::from_pem(PLATFORM_KEY_PEM)?;
    let now = store::now();
    let time = rfc3339::format_cst(now).ok_or("the clock is out of range")?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    for i in 0..count {
        let transaction = json!({
            "appid": appid, "mchid": fake::TEST_MCHID, "out_trade_no": out_trade_no(i),
            "transaction_id": format!("42000020261202{i:014}"), "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
            "success_time": time, "payer": {"openid": openid(i)},
            "amount": {"total": 990, "payer_total": 990, "currency": "CNY", "payer_currency": "CNY"},
        });
        let resource = Resource::encrypt(&key, "transaction", "transaction", transaction.to_string().as_bytes())?;
        let body = json!({
            "id": format!("EV-BENCH{i:012}"), "create_time": time, "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功", "resource": resource,
        })
        .to_string();
        let (timestamp, nonce) = (now.to_string(), format!("{:032x}", u128::from(i) * 7919 + 1));
        let signature = signer.sign_base64(&response_message(&timestamp, &nonce, body.as_bytes()))?;
        writeln!(out, "{timestamp}\t{nonce}\t{signature}\t{}\t{body}", fake::PLATFORM_PUBLIC_KEY_ID)?;
    }
    out.flush()?;
    eprintln!("wrote {count} signed notifications to {file}");
    Ok(())
}
