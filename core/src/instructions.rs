//! Project instructions (SPEC §21): the repository's `AGENTS.md` files and the agent file's
//! `runtime.instructions_files`, read at the start of every turn and put into the system prompt.
//!
//! `AGENTS.md` files are read from the repository root (the nearest ancestor of the work directory holding `.git`)
//! down to the work directory, so the nearest comes last and wins where they disagree, as Codex reads them; without
//! a repository, only the work directory's. The `instructions_files` follow, in the order the agent file lists them.
//! Together they are capped at [`MAX_BYTES`]; what is over is cut with a marker that says so.

use std::path::Path;
use std::path::PathBuf;

/// The most the project instructions may add to the system prompt, in bytes.
pub(crate) const MAX_BYTES: usize = 32 * 1024;

/// The file name read in every directory from the repository root to the work directory.
const AGENTS_FILE: &str = "AGENTS.md";

/// The files that apply to `work_dir`, in prompt order: `AGENTS.md` from the repository root down, then `extra`.
pub(crate) fn files(work_dir: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let root = work_dir
        .ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(work_dir);
    let mut dirs: Vec<&Path> = work_dir
        .ancestors()
        .take_while(|d| d.starts_with(root))
        .collect();
    dirs.reverse();
    dirs.into_iter()
        .map(|d| d.join(AGENTS_FILE))
        .filter(|f| f.is_file())
        .chain(extra.iter().cloned())
        .collect()
}

/// The `# PROJECT INSTRUCTIONS` section for `work_dir`, or an empty string when no file applies. A listed
/// `instructions_files` entry that cannot be read is named in the section rather than failing the turn.
pub(crate) fn render(work_dir: &Path, extra: &[PathBuf]) -> String {
    let files = files(work_dir, extra);
    if files.is_empty() {
        return String::new();
    }
    let mut body = String::new();
    for file in &files {
        let text = match std::fs::read(file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
            Err(e) => format!("(this file could not be read: {e})"),
        };
        body.push_str(&format!("## {}\n{text}\n\n", file.display()));
    }
    let body = cap(body.trim_end(), MAX_BYTES);
    format!(
        "# PROJECT INSTRUCTIONS\n(From the project's files, farthest first: where they disagree, the later one wins. \
         They add to the\nrules above; they never change the output format.)\n{body}\n\n"
    )
}

/// `text` cut to at most `max` bytes (at a character boundary), with a marker saying how much was left out.
fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… {} bytes of project instructions cut: they may add at most {} KiB to the prompt …]",
        &text[..end],
        text.len() - end,
        max / 1024
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_files_come_from_the_repository_root_down_nearest_last() {
        let repo = tempfile::tempdir().unwrap();
        let root = repo.path().canonicalize().unwrap();
        std::fs::create_dir(root.join(".git")).unwrap();
        let work = root.join("services/api");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(root.join("AGENTS.md"), "Use tabs.").unwrap();
        std::fs::write(root.join("services/AGENTS.md"), "Services share a logger.").unwrap();
        std::fs::write(work.join("AGENTS.md"), "Use spaces here.").unwrap();
        let extra = root.join("STYLE.md");
        std::fs::write(&extra, "Short functions.").unwrap();
        assert_eq!(
            files(&work, std::slice::from_ref(&extra)),
            vec![
                root.join("AGENTS.md"),
                root.join("services/AGENTS.md"),
                work.join("AGENTS.md"),
                extra.clone()
            ]
        );
        let section = render(&work, &[extra]);
        let order: Vec<usize> = [
            "Use tabs.",
            "Services share",
            "Use spaces here.",
            "Short functions.",
        ]
        .iter()
        .map(|t| section.find(t).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{section}");
        assert!(section.contains(&format!(
            "## {}\nUse spaces here.",
            work.join("AGENTS.md").display()
        )));
    }

    #[test]
    fn without_a_repository_only_the_work_directory_counts() {
        let outer = tempfile::tempdir().unwrap();
        let work = outer.path().join("w");
        std::fs::create_dir(&work).unwrap();
        std::fs::write(outer.path().join("AGENTS.md"), "not mine").unwrap();
        assert!(files(&work, &[]).is_empty());
        assert_eq!(render(&work, &[]), "");
        std::fs::write(work.join("AGENTS.md"), "mine").unwrap();
        assert_eq!(files(&work, &[]), vec![work.join("AGENTS.md")]);
    }

    #[test]
    fn the_instructions_are_capped_with_a_marker_and_a_missing_file_is_named() {
        let work = tempfile::tempdir().unwrap();
        std::fs::write(work.path().join("AGENTS.md"), "é".repeat(40 * 1024)).unwrap();
        let missing = work.path().join("gone.md");
        let section = render(work.path(), &[missing]);
        assert!(section.len() < MAX_BYTES + 1024, "{}", section.len());
        assert!(section.contains("bytes of project instructions cut: they may add at most 32 KiB"));
        let small = tempfile::tempdir().unwrap();
        let gone = small.path().join("gone.md");
        let section = render(small.path(), std::slice::from_ref(&gone));
        assert!(
            section.contains(&format!(
                "## {}\n(this file could not be read:",
                gone.display()
            )),
            "{section}"
        );
    }
}
