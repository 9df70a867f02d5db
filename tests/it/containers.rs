//! rotor's image and its demo lab as containers (`docker/`, `scripts/containers`), built and
//! run with podman: the demo rotates every shared password of five sshd containers and a
//! directory container from rotor's own container, and each account is then checked with the
//! system's ssh client and ldapwhoami; the image runs as its own user, keeps its vault on the
//! volume, and carries nothing built or secret besides the binary.
//!
//! One test, in order: the demo builds the images that the image checks then inspect. The
//! image gets the test build of rotor (`ROTOR_BIN`), so no release build is needed here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HOSTS: usize = 5;
const ACCOUNTS: usize = 60;
const IMAGE: &str = "localhost/rotor:latest";
const TEST_VOLUME: &str = "rotor-containers-test-vault";
const SERVE: &str = "rotor-containers-test-serve";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> Command {
    let mut c = Command::new(root().join("scripts/containers"));
    c.stdin(Stdio::null());
    c
}

/// `scripts/containers podman ARGS`: podman on the script's own storage.
fn podman(args: &[&str]) -> Output {
    script().arg("podman").args(args).output().unwrap()
}

/// `podman run --rm` of rotor's image with ARGS (podman options, the image, then its
/// arguments). The image's HEALTHCHECK is for `rotor serve`, and this machine has no systemd
/// to time it: it is turned off for these one-shot runs.
fn run_image(args: &[&str]) -> Output {
    let mut all = vec!["run", "--rm", "--no-healthcheck"];
    all.extend_from_slice(args);
    podman(&all)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Takes the lab and the test's volume down whatever happens to the test.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        let _ = script().arg("down").status();
        let _ = podman(&["rm", "-f", "-t", "1", SERVE]);
        let _ = podman(&["volume", "rm", "-f", TEST_VOLUME]);
    }
}

#[test]
fn the_container_demo_rotates_every_shared_password_and_the_image_is_lean() {
    let _down = Down;
    let demo = script()
        .args(["demo", "--accounts", &ACCOUNTS.to_string()])
        .env("ROTOR_BIN", env!("CARGO_BIN_EXE_rotor"))
        .output()
        .unwrap();
    let out = ok("scripts/containers demo", &demo);
    let hosts = HOSTS * 2;
    for line in [
        format!(
            "before: the shared password opens {hosts} of {hosts} host accounts and {ACCOUNTS} of {ACCOUNTS} directory accounts"
        ),
        format!(
            "hosts: {hosts} accounts checked, own password works for {hosts}, shared password refused by {hosts}"
        ),
        format!(
            "directory: {ACCOUNTS} accounts checked, own password works for {ACCOUNTS}, shared password refused by {ACCOUNTS}"
        ),
        format!(
            "distinct: {n} secrets for {n} accounts",
            n = hosts + ACCOUNTS
        ),
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "no line {line:?} in:\n{out}"
        );
    }
    // The image's version is the binary's.
    let version = ok("rotor --version", &run_image(&[IMAGE, "--version"]));
    assert!(
        version.contains(env!("CARGO_PKG_VERSION")),
        "version: {version}"
    );

    // It runs as its own user (not root), and `init` puts the vault on the volume, owned by
    // that user and readable by it only.
    let volume = format!("{TEST_VOLUME}:/var/lib/rotor");
    ok("rotor init", &run_image(&["-v", &volume, IMAGE, "init"]));
    let ids = ok(
        "the vault's owner",
        &run_image(&[
            "-v",
            &volume,
            "--entrypoint",
            "sh",
            IMAGE,
            "-c",
            "id -u; id -g; stat -c '%u %a' /var/lib/rotor; find /var/lib/rotor -type f -exec stat -c '%u %a %n' {} +",
        ]),
    );
    let mut lines = ids.lines();
    assert_eq!(lines.next(), Some("10001"), "{ids}");
    assert_eq!(lines.next(), Some("10001"), "{ids}");
    assert_eq!(lines.next(), Some("10001 700"), "{ids}");
    let files: Vec<&str> = lines.collect();
    assert!(!files.is_empty(), "init wrote no file: {ids}");
    for f in &files {
        let mut parts = f.splitn(3, ' ');
        let (uid, mode, name) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(uid, "10001", "{name} is not the rotor user's: {ids}");
        assert!(
            mode.ends_with("00"),
            "{name} is readable by others (mode {mode}): {ids}"
        );
    }

    // A second container on the same volume finds the vault (`status` needs one).
    ok(
        "rotor status on the volume",
        &run_image(&["-v", &volume, IMAGE, "status"]),
    );

    // The image's HEALTHCHECK probes `rotor serve`'s /health: healthy while the daemon serves
    // where ROTOR_HEALTH_ADDR says (its default, 127.0.0.1:8200), unhealthy when it listens
    // elsewhere. One daemon at a time: one per vault.
    assert_eq!(healthcheck_of_serve(&volume, 8200), 0, "serving on 8200");
    assert_eq!(healthcheck_of_serve(&volume, 8300), 1, "serving on 8300");

    // The layers: the binary and the playbooks, nothing built, no key, no vault, no history.
    let entries = layer_entries();
    assert!(
        entries.iter().any(|e| e == "usr/local/bin/rotor"),
        "no usr/local/bin/rotor among {} entries",
        entries.len()
    );
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("usr/share/rotor/playbooks/")),
        "no playbooks in the image"
    );
    let forbidden = |e: &str| {
        let name = e.rsplit('/').next().unwrap_or(e);
        e.starts_with("src/")
            || e.contains("target/")
            || name == "master.key"
            || name.starts_with("vault.db")
            || name.ends_with("_history")
            || name.starts_with("id_rsa")
            || name.starts_with("id_ed25519")
            || name.starts_with("ssh_host_")
            || name.ends_with(".key")
            || (e.starts_with("var/lib/rotor/") && e != "var/lib/rotor/")
    };
    let bad: Vec<&String> = entries.iter().filter(|e| forbidden(e)).collect();
    assert!(bad.is_empty(), "the image holds {bad:?}");

    let size: u64 = ok("image size", &script().arg("image-size").output().unwrap())
        .trim()
        .parse()
        .unwrap();
    println!("rotor's runtime image: {size} bytes");
}

/// Starts `rotor serve` (the image's example inventory, no network) on 127.0.0.1:PORT in a
/// container, waits until the port accepts connections, and returns the exit code of
/// `podman healthcheck run` (0 healthy, 1 unhealthy); the container is then removed.
fn healthcheck_of_serve(volume: &str, port: u16) -> i32 {
    let listen = format!("127.0.0.1:{port}");
    ok(
        "rotor serve",
        &podman(&[
            "run",
            "-d",
            "--name",
            SERVE,
            "--network",
            "none",
            "-v",
            volume,
            IMAGE,
            "serve",
            "-i",
            "/usr/share/rotor/examples/inventory.yaml",
            "--listen",
            &listen,
        ]),
    );
    let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !podman(&["exec", SERVE, "bash", "-c", &probe])
        .status
        .success()
    {
        let logs = podman(&["logs", "--tail", "5", SERVE]);
        assert!(
            Instant::now() < deadline,
            "rotor serve did not listen on {listen} within 30 s: {}",
            text(&logs.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let code = podman(&["healthcheck", "run", SERVE])
        .status
        .code()
        .unwrap();
    ok("podman rm", &podman(&["rm", "-f", "-t", "2", SERVE]));
    code
}

/// Every path in every layer of rotor's image (`podman save`, docker-archive format: a tar of
/// layer tars, some of them links to others, named by `manifest.json`).
fn layer_entries() -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    ok(
        "podman save",
        &podman(&[
            "save",
            "--format",
            "docker-archive",
            "-o",
            archive.to_str().unwrap(),
            IMAGE,
        ]),
    );
    let unpacked = dir.path().join("image");
    std::fs::create_dir(&unpacked).unwrap();
    ok(
        "tar -x",
        &tar(&["-xf"], &archive, &["-C", unpacked.to_str().unwrap()]),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("manifest.json")).unwrap()).unwrap();
    let layers: Vec<&str> = manifest[0]["Layers"]
        .as_array()
        .expect("manifest.json names the layers")
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(!layers.is_empty(), "no layer in the archive: {manifest}");
    let mut entries = Vec::new();
    for layer in layers {
        let list = ok(
            &format!("layer {layer}"),
            &tar(&["-tf"], &unpacked.join(layer), &[]),
        );
        entries.extend(list.lines().map(|l| l.trim_start_matches("./").to_string()));
    }
    entries
}

fn tar(args: &[&str], archive: &Path, more: &[&str]) -> Output {
    Command::new("tar")
        .args(args)
        .arg(archive)
        .args(more)
        .output()
        .unwrap()
}
