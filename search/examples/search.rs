//! Indexes a folder and answers one question: `cargo run -p codepilot-search --example search -- PATH QUERY`.

use std::path::Path;
use std::time::Instant;

use codepilot_search::CodeIndex;
use codepilot_search::IndexOptions;
use codepilot_search::TraceDirection;
use codepilot_search::render;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root = args.next().unwrap_or_else(|| ".".to_owned());
    let query = args
        .next()
        .unwrap_or_else(|| "parse configuration".to_owned());
    let index = CodeIndex::new(Path::new(&root), IndexOptions::default())?;
    let started = Instant::now();
    let stats = index.build()?;
    println!("indexed {} files in {:?}", stats.scanned, started.elapsed());
    let started = Instant::now();
    let hits = index.search(&query, 5, None);
    println!(
        "{}\n({:?})",
        render::search(&query, &hits),
        started.elapsed()
    );
    if let Some(symbol) = hits.iter().find_map(|h| h.symbol.clone()) {
        println!(
            "\ncallers of {symbol}:\n{}",
            render::trace(
                &symbol,
                "trace_callers",
                &index.trace(&symbol, TraceDirection::Callers, 2)
            )
        );
    }
    println!("\n{}", index.repo_map(512, &[]).text);
    Ok(())
}
