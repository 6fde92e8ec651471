//! Device failures as errors. cubecl runs each device's server in a thread of its own: an
//! allocation failure there (out of device memory) panics that thread, while the caller may
//! carry on, fail later with an unrelated panic, or return figures that are not valid.
//!
//! - [`guarded`]: for measurements; any panic while `f` runs, in any thread, is an error.
//! - [`device_guarded`]: for the commands (`train`, `rerank`, ...) on the GPU backends; when an
//!   allocation failed while `f` ran, the command's failure is the error "out of device memory:
//!   a buffer of N GB could not be allocated", whatever panic or error followed it; other panics
//!   are left as they were.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

/// Panics seen in any thread since the hook was installed, and the last one's message.
static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static LAST_PANIC: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
/// Allocation failures seen (their panics are not printed), and the latest one's message.
static OOMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static LAST_OOM: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
/// Guards running now; whether an allocation failed during them (the device thread's
/// follow-on panics, [`follows_oom`], are then not printed), and how many were not.
static ACTIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SILENCED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Marks a guard as running until dropped; the last one to end prints how many follow-on
/// panics it kept quiet.
struct Active;

impl Active {
    fn start() -> Self {
        count_panics();
        ACTIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        if ACTIVE.fetch_sub(1, SeqCst) == 1 && QUIET.swap(false, SeqCst) {
            let n = SILENCED.swap(0, SeqCst);
            if n > 0 {
                eprintln!(
                    "({n} panics of the device thread that followed the allocation failure were not printed)"
                );
            }
        }
    }
}

/// Counts every panic of the process (the previous hook still prints it). cubecl runs each
/// device's server in its own thread: an allocation failure there (out of device memory)
/// panics that thread, while the caller's reads may still return, so a timing taken across
/// it would look valid. [`guarded`] compares the count before and after.
fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = first_line(&msg);
            }
            // an allocation failure becomes the measurement's error (`guarded`); anything else
            // is printed as before
            use std::sync::atomic::Ordering::SeqCst;
            if out_of_memory(&msg).is_some() {
                if let Ok(mut last) = LAST_OOM.lock() {
                    *last = first_line(&msg);
                }
                OOMS.fetch_add(1, SeqCst);
                if ACTIVE.load(SeqCst) > 0 {
                    QUIET.store(true, SeqCst);
                }
            } else if QUIET.load(SeqCst) && ACTIVE.load(SeqCst) > 0 && follows_oom(&msg) {
                // a consequence of the allocation failure the guard reports
                SILENCED.fetch_add(1, SeqCst);
            } else {
                previous(info);
            }
        }));
    });
}

/// What cubecl 0.10's device thread panics with after an allocation failed (its buffers'
/// handles no longer resolve).
fn follows_oom(msg: &str) -> bool {
    msg.contains("Memory page") || msg.contains("couldn't find resource")
}

/// Runs `f`, turning a panic inside a backend (out of memory, an unsupported op) into an error,
/// so that one failing configuration does not end a whole table. A panic in another thread
/// while `f` runs (cubecl's device server, e.g. "can't allocate buffer") is an error too,
/// even when `f` itself returned.
pub fn guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let _active = Active::start();
    let before = PANICS.load(std::sync::atomic::Ordering::SeqCst);
    let oom_before = OOMS.load(std::sync::atomic::Ordering::SeqCst);
    let r = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            // an allocation failure during `f` (in any thread) is the cause of what followed
            return Err(match oom_since(oom_before) {
                Some(e) => e,
                None => anyhow::anyhow!("panicked: {}", first_line(&msg)),
            });
        }
    };
    if PANICS.load(std::sync::atomic::Ordering::SeqCst) != before {
        let last = LAST_PANIC.lock().map(|s| s.clone()).unwrap_or_default();
        return Err(match oom_since(oom_before) {
            Some(e) => e,
            None => anyhow::anyhow!(
                "a backend thread panicked during the measurement, so its figures are not valid: {last}"
            ),
        });
    }
    r
}

/// Runs a command's device work. When an allocation failed on a device thread while `f` ran,
/// a panic or an error of `f` becomes the "out of device memory" error (the allocator's panic
/// is not printed; `f`'s own error is kept as its cause). When `f` still returned a value (a
/// server that failed one round and went on), the failure is printed as a warning. Any other
/// panic unwinds as before.
pub fn device_guarded<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let _active = Active::start();
    let oom_before = OOMS.load(std::sync::atomic::Ordering::SeqCst);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => {
            if let Some(e) = oom_since(oom_before) {
                eprintln!("warning: {e} (the command went on)");
            }
            Ok(v)
        }
        Ok(Err(err)) => Err(match oom_since(oom_before) {
            Some(oom) => err.context(oom.to_string()),
            None => err,
        }),
        Err(p) => match oom_since(oom_before) {
            Some(e) => Err(e),
            None => resume_unwind(p),
        },
    }
}

/// The out-of-memory error when an allocation failed after `count` failures were seen (with
/// the latest failure's size).
fn oom_since(count: usize) -> Option<anyhow::Error> {
    if OOMS.load(std::sync::atomic::Ordering::SeqCst) == count {
        return None;
    }
    let last = LAST_OOM.lock().map(|s| s.clone()).unwrap_or_default();
    out_of_memory(&last)
}

/// The error for a panic message of cubecl's allocator ("can't allocate buffer of size: N"),
/// `None` for any other message.
fn out_of_memory(msg: &str) -> Option<anyhow::Error> {
    let rest = &msg[msg.find("can't allocate buffer of size:")? + 30..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let size = digits.parse::<u64>().ok()?;
    Some(anyhow::anyhow!(
        "out of device memory: a buffer of {:.2} GB could not be allocated",
        size as f64 / 1e9
    ))
}

fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    if l.chars().count() > 200 {
        format!("{}...", l.chars().take(200).collect::<String>())
    } else {
        l.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::{device_guarded, guarded};

    /// The counters are process-wide: the tests that panic on purpose take turns.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_panic_in_another_thread_invalidates_the_measurement() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let r = guarded(|| {
            // What cubecl's device server does on an allocation failure: its thread panics,
            // the caller carries on.
            let _ =
                std::thread::spawn(|| panic!("can't allocate buffer of size: 9381867520")).join();
            Ok(1.0)
        });
        let e = r
            .expect_err("the other thread's panic must be reported")
            .to_string();
        assert_eq!(
            e,
            "out of device memory: a buffer of 9.38 GB could not be allocated"
        );
        let r = guarded(|| {
            let _ = std::thread::spawn(|| panic!("index out of bounds")).join();
            Ok(1.0)
        });
        let e = r
            .expect_err("any panic invalidates the figures")
            .to_string();
        assert!(
            e.contains("a backend thread panicked") && e.contains("index out of bounds"),
            "{e}"
        );
        // After an allocation failure, the device thread's follow-on panics are counted, not
        // printed, while the guard runs.
        let silenced = super::SILENCED.load(std::sync::atomic::Ordering::SeqCst);
        let e = guarded(|| -> anyhow::Result<()> {
            let _ =
                std::thread::spawn(|| panic!("can't allocate buffer of size: 3000000000")).join();
            let _ = std::thread::spawn(|| panic!("Memory page 0 doesn't exist")).join();
            let now = super::SILENCED.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(now, silenced + 1, "the follow-on panic was printed");
            Ok(())
        })
        .unwrap_err();
        assert!(e.to_string().contains("3.00 GB"), "{e}");
        // An allocation failure in the device thread, then a follow-on panic in `f`: the
        // failure is the error.
        let e = guarded(|| -> anyhow::Result<()> {
            let _ =
                std::thread::spawn(|| panic!("can't allocate buffer of size: 2000000000")).join();
            panic!("Memory page 0 doesn't exist")
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "out of device memory: a buffer of 2.00 GB could not be allocated"
        );
        // A clean run afterwards is valid again, and a panic in `f` itself is an error.
        assert_eq!(guarded(|| Ok(2)).unwrap(), 2);
        let e = guarded(|| -> anyhow::Result<()> { panic!("unsupported op") }).unwrap_err();
        assert!(e.to_string().contains("unsupported op"), "{e}");
    }

    #[test]
    fn a_command_reports_out_of_memory_and_keeps_other_panics() {
        let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // an allocation failure in the device thread, then the caller's error: the failure
        // is the error, the caller's its cause
        let e = device_guarded(|| -> anyhow::Result<()> {
            let _ =
                std::thread::spawn(|| panic!("can't allocate buffer of size: 81000000000")).join();
            anyhow::bail!("device read failed")
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "out of device memory: a buffer of 81.00 GB could not be allocated"
        );
        assert_eq!(e.root_cause().to_string(), "device read failed");
        // a command that went on after it (a server's failed round) keeps its result
        let v = device_guarded(|| {
            let _ = std::thread::spawn(|| panic!("can't allocate buffer of size: 1000")).join();
            Ok(5)
        });
        assert_eq!(v.unwrap(), 5);
        // then a follow-on panic in the caller: still the allocation failure
        let e = device_guarded(|| -> anyhow::Result<()> {
            let _ = std::thread::spawn(|| panic!("can't allocate buffer of size: 5000000")).join();
            panic!("channel closed")
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "out of device memory: a buffer of 0.01 GB could not be allocated"
        );
        // other panics unwind as before, and errors and values pass through
        let p = std::panic::catch_unwind(|| {
            device_guarded(|| -> anyhow::Result<()> { panic!("index out of bounds") })
        })
        .expect_err("a panic that is not an allocation failure unwinds");
        assert_eq!(p.downcast_ref::<&str>(), Some(&"index out of bounds"));
        let e = device_guarded(|| -> anyhow::Result<()> { anyhow::bail!("bad input") });
        assert_eq!(e.unwrap_err().to_string(), "bad input");
        assert_eq!(device_guarded(|| Ok(3)).unwrap(), 3);
    }
}
