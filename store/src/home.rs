//! The CodePilot home directory, where default session stores live.

use std::path::PathBuf;

use crate::error::Result;
use crate::error::StoreError;

/// `$CODEPILOT_HOME`, default `~/.codepilot`: the file store's default directory is `sessions/` in it, the default
/// SQLite database `sessions.db`.
///
/// Sessions kept there hold file contents and command output, so an existing folder that others can read is made
/// private (0700).
///
/// # Errors
/// [`StoreError::Config`] when neither `CODEPILOT_HOME` nor `HOME` is set; an I/O error when the folder's
/// permissions cannot be fixed.
pub fn codepilot_home() -> Result<PathBuf> {
    let home = match std::env::var_os("CODEPILOT_HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h),
        None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".codepilot"),
            None => {
                return Err(StoreError::Config(
                    "cannot find a home directory: set CODEPILOT_HOME or HOME".to_owned(),
                ));
            }
        },
    };
    if let Ok(meta) = std::fs::metadata(&home) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if meta.is_dir() && mode & 0o077 != 0 {
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(|e| StoreError::io("making the CodePilot home private", &home, e))?;
        }
    }
    Ok(home)
}
