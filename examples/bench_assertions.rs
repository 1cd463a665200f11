//! Client assertions for the `private_key_jwt` load run (`benches/load.sh`): signs `COUNT` RS256
//! assertions as `CLIENT_ID` with the key `bench_server` wrote, one per line to `OUT`, each with
//! its own `jti` and a minute to live. Run right before the load that spends them; the signing is
//! not what is measured.
//!
//! ```sh
//! cargo run --release --example bench_assertions -- /tmp/bench/signing_key.pk8 bench-static 60000 /tmp/bench/assertions.txt
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/support/mod.rs"]
mod support;

use support::jose;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key_file, client_id, count, out] = args.as_slice() else {
        eprintln!("usage: bench_assertions KEY_FILE CLIENT_ID COUNT OUT");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("a number of assertions");
    let key = jose::TestKey::rsa_from_pkcs8("bench-key", &std::fs::read(key_file).unwrap());
    let now = jose::now();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let lines: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let key = &key;
                let share = count / threads + usize::from(i < count % threads);
                scope.spawn(move || {
                    (0..share)
                        .map(|_| key.sign(&jose::claims(client_id, now)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    std::fs::write(out, lines.join("\n") + "\n").unwrap();
}
