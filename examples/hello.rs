//! A bare tiny_http hello world: every request gets `200 {"hello":"world"}`.
//!
//! The throughput ceiling of this stack, for benchmarks:
//! `cargo run --release --example hello -- --listen 127.0.0.1:8081 --workers 2`

use std::process::ExitCode;
use std::sync::Arc;
use std::thread;

fn main() -> ExitCode {
    let mut listen = String::from("127.0.0.1:8081");
    let mut workers: usize = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            ("--workers", Some(n)) => match n.parse() {
                Ok(n) if n > 0 => workers = n,
                _ => return usage(),
            },
            _ => return usage(),
        }
    }

    let server = match tiny_http::Server::http(&listen) {
        Ok(server) => Arc::new(server),
        Err(e) => {
            eprintln!("hello: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on http://{}", server.server_addr());
    // `println!` flushes at the newline only when stdout is a terminal.
    let _ = std::io::Write::flush(&mut std::io::stdout());

    let content_type = tiny_http::Header::from_bytes("Content-Type", "application/json").expect("a valid header");
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let server = Arc::clone(&server);
            let content_type = content_type.clone();
            thread::spawn(move || {
                for request in server.incoming_requests() {
                    let response =
                        tiny_http::Response::from_string(r#"{"hello":"world"}"#).with_header(content_type.clone());
                    let _ = request.respond(response);
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: hello [--listen ADDR] [--workers N]");
    ExitCode::from(2)
}
