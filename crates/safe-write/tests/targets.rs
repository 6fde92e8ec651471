//! What `safe-write` does to each kind of target, checked on the file system.

use safe_write::{WriteError, replace_with, write_bytes, write_file};
use std::fs;
use std::io::Write;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_a_new_file_and_replaces_an_old_one_leaving_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("out.trec");
    write_bytes(&p, b"one").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"one");
    write_file(&p, |f| f.write_all(b"two")).unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"two");
    assert_eq!(entries(tmp.path()), ["out.trec"]);
}

#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("out.trec");
    fs::write(&p, "old").unwrap();
    let e = write_file(&p, |f| {
        f.write_all(b"half")?;
        Err(std::io::Error::other("disk full"))
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("disk full") && e.to_string().contains("out.trec"),
        "{e}"
    );
    assert_eq!(fs::read_to_string(&p).unwrap(), "old");
    assert_eq!(entries(tmp.path()), ["out.trec"]);
}

#[cfg(unix)]
#[test]
fn never_writes_through_or_over_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let link = tmp.path().join("out.trec");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let e = write_bytes(&link, b"x").unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::NotRegular {
                what: "a symbolic link",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A symlink planted where an old writer put its predictable temporary name is not opened.
    let planted = tmp
        .path()
        .join(format!(".new.trec.tmp{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    write_bytes(&tmp.path().join("new.trec"), b"fresh").unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
}

#[cfg(unix)]
#[test]
fn refuses_devices_fifos_and_folders() {
    let e = write_bytes(std::path::Path::new("/dev/null"), b"x").unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::NotRegular {
                what: "a device, FIFO or socket",
                ..
            }
        ),
        "{e}"
    );
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(
            fs::symlink_metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let e = write_bytes(tmp.path(), b"x").unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::NotRegular {
                what: "a folder",
                ..
            }
        ),
        "{e}"
    );
    let fifo = tmp.path().join("fifo");
    let ok = std::process::Command::new("mkfifo").arg(&fifo).status();
    if ok.is_ok_and(|s| s.success()) {
        let e = write_bytes(&fifo, b"x").unwrap_err();
        assert!(matches!(e, WriteError::NotRegular { .. }), "{e}");
        assert!(!fs::symlink_metadata(&fifo).unwrap().is_file());
    }
}

#[cfg(unix)]
#[test]
fn keeps_the_mode_of_an_existing_file() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("secret.json");
    fs::write(&p, "{}").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    write_bytes(&p, b"{\"a\":1}").unwrap();
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // a new file gets what `File::create` gives (0666 less the umask), not a temporary's 0600
    let q = tmp.path().join("new.json");
    write_bytes(&q, b"{}").unwrap();
    let r = tmp.path().join("plain.json");
    fs::File::create(&r).unwrap();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&q), mode(&r));
}

#[test]
fn replace_with_moves_a_finished_file_into_place() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("model.mpk-partial");
    let dest = tmp.path().join("model.mpk");
    fs::write(&src, "weights").unwrap();
    replace_with(&src, &dest).unwrap();
    assert_eq!(fs::read_to_string(&dest).unwrap(), "weights");
    assert!(!src.exists());
}
