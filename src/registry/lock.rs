//! One `registry up` or `down` at a time per state directory: an exclusive `flock` on a file
//! there, held until dropped. The kernel releases it when its holder exits, killed or not,
//! so a crashed run leaves no stale lock. The holder writes its pid and command into the
//! file, so a waiter can say what it waits on.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a second `up` waits for the first: above what a first `up` takes when the engine
/// must pull the registry's image, so only a stuck holder runs it out.
pub const WAIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(200);

/// Held while this process changes the registry; released on drop.
#[derive(Debug)]
pub struct Held {
    file: File,
    pub path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: flock on a descriptor this struct owns; closing it would release it too.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Why the lock was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// Another process held it for the whole wait; `holder` is what it wrote (pid, command).
    TimedOut {
        path: PathBuf,
        holder: String,
        waited: Duration,
    },
    Io(String),
}

/// The lock file of the registry state under `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("registry").join("lock")
}

/// Takes the lock at `path`, waiting at most `wait` for another holder. `waiting` is called
/// once, with the holder's description, when the lock is not free at once.
pub fn acquire(path: &Path, doing: &str, wait: Duration, waiting: &mut dyn FnMut(&str)) -> Result<Held, LockError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LockError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| LockError::Io(format!("cannot open {}: {e}", path.display())))?;
    let start = Instant::now();
    let mut said = false;
    loop {
        // SAFETY: flock on a descriptor we own; LOCK_NB returns at once.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(LockError::Io(format!("cannot lock {}: {err}", path.display())));
        }
        let holder = holder(&mut file);
        if start.elapsed() >= wait {
            return Err(LockError::TimedOut { path: path.to_path_buf(), holder, waited: wait });
        }
        if !said {
            waiting(&holder);
            said = true;
        }
        std::thread::sleep(POLL);
    }
    let me = format!("pid {} ({doing})", std::process::id());
    let written = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(me.as_bytes()));
    written.map_err(|e| LockError::Io(format!("cannot write {}: {e}", path.display())))?;
    Ok(Held { file, path: path.to_path_buf() })
}

/// What the holder wrote about itself, or a stand-in while it has not written yet.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
    match text.trim() {
        "" => "another kindload".to_string(),
        said => format!("another kindload, {said}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_says_on_what_and_gives_up_after_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let held = acquire(&path, "kindload registry up", WAIT, &mut |_| panic!("free: no wait")).unwrap();
        // flock locks belong to the open file, so a second open in this process contends as
        // another process would.
        let mut told = Vec::new();
        let second =
            acquire(&path, "kindload registry down", Duration::from_millis(500), &mut |h| told.push(h.to_string()));
        let me = format!("another kindload, pid {} (kindload registry up)", std::process::id());
        assert_eq!(told, std::slice::from_ref(&me));
        match second {
            Err(LockError::TimedOut { holder, path: p, .. }) => {
                assert_eq!(holder, me);
                assert_eq!(p, path);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        drop(held);
        let again = acquire(&path, "kindload registry down", Duration::ZERO, &mut |_| panic!("released")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&again.path).unwrap(),
            format!("pid {} (kindload registry down)", std::process::id())
        );
    }

    #[test]
    fn the_waiter_gets_it_once_the_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(dir.path());
        let held = acquire(&path, "first", WAIT, &mut |_| {}).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(held);
        });
        let mut waited = false;
        let second = acquire(&path, "second", Duration::from_secs(10), &mut |_| waited = true);
        releaser.join().unwrap();
        assert!(second.is_ok() && waited, "{second:?}");
    }
}
