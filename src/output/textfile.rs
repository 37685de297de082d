//! The node_exporter textfile: its directory checked (no one else may write it) and
//! the file replaced atomically, so the collector never reads half a file.

use std::path::Path;

use crate::error::{Error, Result};

/// Refuses (UNKNOWN for health) a textfile whose directory someone else could write:
/// whoever can write it can plant a file or a symlink where odoo-db writes, or replace
/// the metrics node_exporter serves (the contract's "Files odoo-db writes").
pub fn check_textfile_dir(path: &Path) -> Result<()> {
    textfile_name(path)?;
    safefs::check_private_dir(textfile_dir(path), "textfile directory")
        .map_err(|error| Error::from(error).context(format!("--textfile {}", path.display())))
}

pub(crate) fn textfile_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

pub(crate) fn textfile_name(path: &Path) -> Result<()> {
    match path.file_name() {
        Some(_) => Ok(()),
        None => Err(Error::refused(format!(
            "--textfile {}: not a file name",
            path.display()
        ))),
    }
}

/// Writes `contents` to `path` atomically, mode 0644 (node_exporter reads it as another
/// user): a temporary file with an unpredictable name created with `O_EXCL` beside it,
/// fsynced, renamed over `path`. node_exporter's textfile collector reads only `*.prom`
/// files and always sees a whole one (the temporary name starts with `.`, ends in
/// `.tmp`). The caller checks the directory first ([`check_textfile_dir`]).
pub fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    textfile_name(path)?;
    safefs::replace_atomically(path, contents.as_bytes(), 0o644).map_err(|error| {
        Error::from(error).context(format!("writing the textfile {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_textfile_is_replaced_whole_with_mode_0644() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odoo_db.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("odoo_db.prom")]);
    }
}
