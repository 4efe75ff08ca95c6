//! Running a command with its stderr on a pseudo-terminal, as a person at a terminal would see it
//! (stdout stays a pipe, as when a tool reads s2i's output).

use std::fs::OpenOptions;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::{Command, ExitStatus, Stdio};

use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

/// What a command wrote: its exit status, its stdout (a pipe) and what its terminal showed.
pub struct TtyRun {
    /// How the command ended.
    pub status: ExitStatus,
    /// What it wrote to stdout (a pipe).
    pub stdout: String,
    /// Everything its terminal received: text, carriage returns and escape sequences.
    pub terminal: String,
}

/// Run `cmd` with stderr on a new 120-column pseudo-terminal. Panics if no pty can be had.
pub fn run_with_tty_stderr(mut cmd: Command) -> TtyRun {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("opening a pseudo-terminal");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().expect("a utf-8 pty path"))
        .expect("opening the pty's terminal side");
    tcsetwinsize(&slave, Winsize { ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0 }).expect("setting the pty's size");
    let slave: OwnedFd = slave.into();
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(slave)).spawn().expect("running the command");
    // The command holds our copy of the terminal side: it must go, or the master never sees it close.
    drop(cmd);
    // The terminal side closes when the child exits (ours was handed over); the master then
    // reads EIO, which ends the copy.
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    });
    let output = child.wait_with_output().expect("waiting for the command");
    let terminal = reader.join().expect("the pty reader");
    TtyRun {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        terminal: String::from_utf8_lossy(&terminal).into_owned(),
    }
}
