//! Fills a wxlogin database with users and live sessions for benchmarks, and writes the
//! session tokens, one per line, for the load generator.
//!
//! `cargo run --release --example seed -- DB TOKENS_FILE COUNT`

use std::io::Write;

use wxlogin::secrets::{new_token, sha256, Secret};
use wxlogin::store::{self, Caller, NewLogin, Store, Terms};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, tokens, count] = args.as_slice() else {
        return Err("usage: seed DB TOKENS_FILE COUNT".into());
    };
    let count: u32 = count.parse()?;
    let store = Store::open(db.as_ref())?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(tokens)?);
    // Sessions are stamped a few minutes ahead so that none falls due for its sliding
    // write during the benchmark: in real traffic a session is used many times a minute
    // and slides at most once, so the verify path is a read. (Seeding takes longer than
    // the one-minute slide interval, which would otherwise turn random verifies into writes.)
    let terms = Terms { now: store::now() + 300, ttl: 2_592_000, max_lifetime: 7_776_000, max_per_user: 50 };
    for i in 0..count {
        let token = new_token();
        store.record_login(&NewLogin {
            app: "main",
            openid: &format!("oBench{i:022}"),
            unionid: None,
            session_key: &Secret::new("tiihtNczf5v6AKRyjwEUhQ=="),
            code_hash: sha256(format!("seed-{i}").as_bytes()),
            token_hash: sha256(token.expose().as_bytes()),
            terms,
            caller: Caller { key_hash: None, ip: std::net::IpAddr::from([127, 0, 0, 1]) },
        })?;
        writeln!(out, "{}", token.expose())?;
    }
    out.flush()?;
    store.checkpoint()?;
    eprintln!("seeded {count} users and sessions into {db}");
    Ok(())
}
