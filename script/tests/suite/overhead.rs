//! Measured overhead (ignored by default; run with `--ignored --nocapture`, ideally `--release`).

use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::FakeHost;
use super::request;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a test: prints numbers"]
async fn overhead_of_a_one_tool_call_block() {
    let host = Arc::new(FakeHost::default());
    let mut samples = Vec::with_capacity(200);
    for _ in 0..220 {
        let req = request(
            "r = execute('main', 'true', timeout=5)\nif r['exit_code'] != 0:\n    print('failed')\n",
        );
        let started = Instant::now();
        codepilot_script::run_block(req, host.clone(), CancellationToken::new())
            .await
            .unwrap();
        samples.push(started.elapsed());
    }
    let samples = samples.split_off(20);
    let mut spawn = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        std::thread::Builder::new()
            .stack_size(256 * 1024 * 1024)
            .spawn(|| ())
            .unwrap()
            .join()
            .unwrap();
        spawn.push(started.elapsed());
    }
    let mut empty = Vec::with_capacity(200);
    for _ in 0..200 {
        let req = request("pass\n");
        let started = Instant::now();
        codepilot_script::run_block(req, host.clone(), CancellationToken::new())
            .await
            .unwrap();
        empty.push(started.elapsed());
    }
    eprintln!(
        "one-tool-call block: median {:?}, min {:?}, max {:?}; empty block median {:?}; 256 MiB thread spawn+join median {:?}",
        median(samples.clone()),
        samples.iter().min().unwrap(),
        samples.iter().max().unwrap(),
        median(empty),
        median(spawn),
    );
}
