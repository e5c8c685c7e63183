//! What a path in a pipeline names, said plainly: a regular file, or
//! something else (missing, a directory, a FIFO, a device), and whether it
//! lies inside the project — the rule for files a stage reads from outside
//! (absolute paths, `..`, symlinks leading out) is the pipeline's
//! `outside_paths` setting.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What to do about a file a stage reads from outside the project directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutsidePaths {
    /// Read it, with a warning on every `validate`, `plan` and `run` (default).
    #[default]
    Warn,
    /// Read it without a word (the file is part of the setup, e.g. a model
    /// fetched by a script).
    Allow,
    /// Refuse the pipeline: everything it reads must live in the project.
    Deny,
}

/// Why `path` cannot be read as a regular file, or `None` when it can.
pub fn not_a_file(path: &Path) -> Option<String> {
    let md = match fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("does not exist".into()),
        Err(e) => return Some(format!("cannot be read ({e})")),
    };
    let t = md.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("is a directory, not a file".into())
    } else if t.is_fifo() {
        Some("is a named pipe (FIFO), not a regular file".into())
    } else if t.is_char_device() || t.is_block_device() {
        Some("is a device, not a regular file".into())
    } else if t.is_socket() {
        Some("is a socket, not a regular file".into())
    } else {
        Some("is not a regular file".into())
    }
}

/// How `rel` (as written in the pipeline, relative to `root`) leaves the
/// project — an absolute path, a `..` that climbs out, or a symlink whose
/// target is outside — in words; `None` when it stays inside.
pub fn outside(root: &Path, rel: &Path) -> Option<String> {
    if rel.is_absolute() {
        return Some("an absolute path".into());
    }
    let mut depth: i64 = 0;
    for c in rel.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Some("`..` climbs out of it".into());
        }
    }
    let (Ok(real_root), Ok(real)) = (fs::canonicalize(root), fs::canonicalize(root.join(rel))) else { return None };
    (!real.starts_with(&real_root)).then(|| format!("a symlink leads to {}", real.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_path_and_the_project_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("project");
        fs::create_dir_all(root.join("data")).unwrap();
        fs::write(root.join("data/a.jsonl"), "{}").unwrap();
        fs::write(dir.path().join("secret.txt"), "x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("data/link.txt")).unwrap();
        assert_eq!(not_a_file(&root.join("data/a.jsonl")), None);
        assert_eq!(not_a_file(&root.join("data")).unwrap(), "is a directory, not a file");
        assert_eq!(not_a_file(&root.join("nope")).unwrap(), "does not exist");
        assert_eq!(not_a_file(Path::new("/dev/zero")).unwrap(), "is a device, not a regular file");
        assert_eq!(outside(&root, Path::new("data/a.jsonl")), None);
        assert_eq!(outside(&root, Path::new("data/../data/a.jsonl")), None);
        assert!(outside(&root, Path::new("../secret.txt")).is_some());
        assert!(outside(&root, Path::new("/etc/passwd")).is_some());
        assert!(outside(&root, Path::new("data/link.txt")).is_some(), "a symlink leading out");
    }
}
