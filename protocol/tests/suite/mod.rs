mod compaction;
mod feedback;
mod observation;
mod parse;
mod payloads;
mod props;
mod schema;
mod stream;
mod wire;

/// Joins lines with `\n`, ending with one.
pub fn lf(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}
