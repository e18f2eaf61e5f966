//! Process lifecycle: configuration sources and graceful shutdown.
mod support;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

fn wait_exit(child: &mut std::process::Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let mut p = start_ferrite(&[]);
    let mut c = Conn::connect(p.port).unwrap();
    assert_eq!(c.cmd(&["SET", "k", "v"]), b"+OK\r\n");
    let pid = p.child.id() as i32;
    // SAFETY: sending SIGTERM to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let st = wait_exit(&mut p.child, Duration::from_secs(10)).expect("ferrite did not exit after SIGTERM");
    assert!(st.success(), "exit status {st}");
    // The client sees the connection closed, not a hang.
    assert!(c.try_read_reply().is_none());
}

/// SHUTDOWN NOSAVE, even while a script is past the busy threshold: once the client sees its connection
/// closed, a new connection is refused (the listening socket is shut before the connection closes, as in Redis,
/// which exits inside the command).
#[test]
fn shutdown_refuses_new_connections_at_once() {
    let mut p = start_ferrite(&[]);
    let mut c = Conn::connect(p.port).unwrap();
    assert_eq!(c.cmd(&["CONFIG", "SET", "busy-reply-threshold", "100"]), b"+OK\r\n");
    let mut busy = Conn::connect(p.port).unwrap();
    busy.send(&["EVAL", "while true do end", "0"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(c.cmd(&["PING"]).starts_with(b"-BUSY"));
    c.send(&["SHUTDOWN", "NOSAVE"]);
    assert!(c.try_read_reply().is_none(), "SHUTDOWN must close the connection without a reply");
    let e = std::net::TcpStream::connect(("127.0.0.1", p.port)).expect_err("a connection after SHUTDOWN was accepted");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    wait_exit(&mut p.child, Duration::from_secs(10)).expect("ferrite did not exit after SHUTDOWN NOSAVE");
}

fn spawn_banner(cmd: &mut Command) -> (std::process::Child, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

#[test]
fn config_file_env_and_flag_precedence() {
    let dir = TempDir::new("cfg");
    let file = dir.0.join("ferrite.toml");
    let file_port = free_port();
    std::fs::write(&file, format!("port = {file_port}\nbind = \"127.0.0.1\"\nrequirepass = \"fromfile\"\n")).unwrap();

    // File only.
    let (mut child, banner) = spawn_banner(Command::new(ferrite_bin()).args(["--config", file.to_str().unwrap()]));
    assert!(banner.trim_end().ends_with(&format!(":{file_port}")), "{banner}");
    let mut c = Conn::connect(file_port).unwrap();
    assert!(c.cmd(&["GET", "x"]).starts_with(b"-NOAUTH"));
    assert_eq!(c.cmd(&["AUTH", "fromfile"]), b"+OK\r\n");
    child.kill().unwrap();
    child.wait().unwrap();

    // Env overrides file, flag overrides env.
    let env_port = free_port();
    let flag_port = free_port();
    let (mut child, banner) = spawn_banner(
        Command::new(ferrite_bin())
            .args(["--config", file.to_str().unwrap(), "--port", &flag_port.to_string()])
            .env("FERRITE_PORT", env_port.to_string())
            .env("FERRITE_REQUIREPASS", "fromenv"),
    );
    assert!(banner.trim_end().ends_with(&format!(":{flag_port}")), "{banner}");
    let mut c = Conn::connect(flag_port).unwrap();
    assert!(c.cmd(&["AUTH", "fromfile"]).starts_with(b"-WRONGPASS"));
    assert_eq!(c.cmd(&["AUTH", "fromenv"]), b"+OK\r\n");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = TempDir::new("badcfg");
    let file = dir.0.join("bad.toml");
    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let out = Command::new(ferrite_bin()).args(["--config", file.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad config file") && err.contains("no_such_setting"), "{err}");
}

#[test]
fn idle_clients_time_out() {
    let p = start_ferrite(&["--timeout", "1"]);
    let mut idle = Conn::connect(p.port).unwrap();
    assert_eq!(idle.cmd(&["PING"]), b"+PONG\r\n");
    let mut sub = Conn::connect(p.port).unwrap();
    sub.cmd(&["SUBSCRIBE", "ch"]);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(idle.try_read_reply().is_none(), "idle client should have been closed");
    // Subscribers are exempt.
    assert_eq!(sub.cmd(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

/// A crash (DEBUG SEGFAULT, or SIGABRT from outside) writes a crash report with a stack trace to the log
/// (stderr here), as Redis does, and the process still dies of that signal.
#[test]
fn crash_report_on_fatal_signals() {
    use std::os::unix::process::ExitStatusExt;
    for how in ["segfault", "abort"] {
        let dir = TempDir::new("crash");
        let port = free_port().to_string();
        let mut child = Command::new(ferrite_bin())
            .args(["--port", &port, "--bind", "127.0.0.1", "--enable-debug-command", "yes", "--dir"])
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let port: u16 = port.parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = loop {
            if let Ok(c) = Conn::connect(port) {
                break c;
            }
            assert!(Instant::now() < deadline, "ferrite did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(c.cmd(&["PING"]), b"+PONG\r\n");
        let sig = if how == "segfault" {
            c.send(&["DEBUG", "SEGFAULT"]);
            libc::SIGSEGV
        } else {
            // SAFETY: sending SIGABRT to our own child process.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGABRT) }, 0);
            libc::SIGABRT
        };
        let st = wait_exit(&mut child, Duration::from_secs(10)).expect("ferrite did not die");
        assert_eq!(st.signal(), Some(sig), "{how}: {st}");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains(&format!("crashed by signal: {sig}")), "{how}: {err}");
        assert!(err.contains("------ STACK TRACE ------"), "{how}: {err}");
    }
}
