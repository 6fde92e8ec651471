//! The one way the workspace writes an output file.
//!
//! [`write_file`] (and [`write_bytes`]) write into an exclusive temporary file created beside the
//! target (`O_CREAT | O_EXCL`, a random name: a planted file or symlink is never opened),
//! fsync it, rename it over the target and fsync the folder. A reader sees the old content or
//! the new one, never a part; a failure leaves the target as it was and removes the temporary
//! file. [`replace_with`] does the last steps for a file that another library wrote.
//!
//! The target must be absent or a regular file: a symlink, a folder, a device, a FIFO or a
//! socket is refused with [`WriteError::NotRegular`] (renaming over `/dev/null` would turn it
//! into a regular file, and a symlink would be replaced rather than followed). A file that
//! exists keeps its permission bits; a new one gets the default (`0666` less the umask).

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What went wrong; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target exists and is not a regular file.
    #[error("{}: refusing to replace {what} (write to a regular file's path)", path.display())]
    NotRegular {
        /// The target.
        path: PathBuf,
        /// What it is: "a symbolic link", "a folder", "a device, FIFO or socket".
        what: &'static str,
    },
    /// The path has no file name (`/`, `..`).
    #[error("{}: not a file path", path.display())]
    NotAFilePath {
        /// The target.
        path: PathBuf,
    },
    /// Creating, writing, syncing or renaming failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The target.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl WriteError {
    /// The I/O error inside, when there is one (what a `write` closure returned, for one).
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            WriteError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Io { source, path } => {
                io::Error::new(source.kind(), format!("{}: {source}", path.display()))
            }
            other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// Checks that `path` is absent or a regular file, and returns its permissions if it exists.
pub fn check_target(path: &Path) -> Result<Option<Permissions>, WriteError> {
    if path.file_name().is_none() {
        return Err(WriteError::NotAFilePath { path: path.into() });
    }
    match fs::symlink_metadata(path) {
        Ok(m) => {
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                "a symbolic link"
            } else if ft.is_dir() {
                "a folder"
            } else if !ft.is_file() {
                "a device, FIFO or socket"
            } else {
                return Ok(Some(m.permissions()));
            };
            Err(WriteError::NotRegular {
                path: path.into(),
                what,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(WriteError::Io {
            path: path.into(),
            source,
        }),
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `path` through `write`, atomically (see the crate docs).
pub fn write_file(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: path.into(),
        source,
    };
    let old = check_target(path)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Created with 0666 less the umask, as `File::create` would.
        builder.permissions(Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(parent_of(path)).map_err(io)?;
    write(tmp.as_file_mut()).map_err(io)?;
    tmp.as_file_mut().flush().map_err(io)?;
    if let Some(perm) = old {
        tmp.as_file().set_permissions(perm).map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    // Checked again right before the rename, so that a target turned into a symlink or a
    // device meanwhile is not replaced.
    check_target(path)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    sync_dir(parent_of(path));
    Ok(())
}

/// Whether `name` is one of this crate's temporary files (`.NAME.XXXXXX.tmp`).
pub fn is_temporary(name: &str) -> bool {
    name.len() > ".x.tmp".len() && name.starts_with('.') && name.ends_with(".tmp")
}

/// Removes the temporary files that writes into `dir` left behind when their process was
/// killed between creating and renaming them ([`is_temporary`] names; regular files only, never
/// a link). Returns how many. Call it only on a folder that no other process is writing into.
pub fn remove_temporaries(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() && is_temporary(&entry.file_name().to_string_lossy()) {
            fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write_file(path, |f| f.write_all(bytes))
}

/// Moves `src` (a file another library wrote, in `dest`'s folder) over `dest`: fsync, the
/// target check, rename, fsync of the folder. `dest` keeps its permission bits if it exists.
pub fn replace_with(src: &Path, dest: &Path) -> Result<(), WriteError> {
    let io = |source| WriteError::Io {
        path: dest.into(),
        source,
    };
    let old = check_target(dest)?;
    let f = File::open(src).map_err(|source| WriteError::Io {
        path: src.into(),
        source,
    })?;
    if let Some(perm) = old {
        f.set_permissions(perm).map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    fs::rename(src, dest).map_err(io)?;
    sync_dir(parent_of(dest));
    Ok(())
}

/// Best effort: makes a rename in `dir` durable (not supported everywhere; a failure is not an
/// error of the write, which has happened).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
