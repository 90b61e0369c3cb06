//! The READMEs say what the binary does: every subcommand `codepilot --help` lists is in the project README's CLI
//! table and in the CLI crate's README, so a new subcommand without docs fails here.

use super::support::codepilot;
use super::support::stdout;

/// The subcommands `codepilot --help` lists (without `help`).
async fn subcommands() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = codepilot(dir.path(), &["--help"]).await;
    assert_eq!(out.status.code(), Some(0));
    let help = stdout(&out);
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "{help}");
    names
}

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_is_in_both_readmes() {
    let project = read("../README.md");
    let crate_readme = read("README.md");
    for name in subcommands().await {
        assert!(
            project.contains(&format!("| `codepilot {name}")),
            "README.md's CLI table lacks `codepilot {name}`"
        );
        assert!(
            crate_readme.contains(&format!("`{name}`")),
            "cli/README.md lacks `{name}`"
        );
    }
}
