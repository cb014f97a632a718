//! The `actix-snapshot` inspector binary, run as a process: output, JSON, exit codes and
//! error messages on good, corrupt and missing files.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use actix_snapshot::GlobalSnapshot;
use actix_snapshot::checkpoint::{CheckpointStore, FsStore, file_name};
use common::*;

fn inspector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actix-snapshot"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn ring_snapshot() -> GlobalSnapshot {
    ring_snapshot_in_flight(3, 4).await
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[actix::test]
async fn list_inspect_and_verify_a_checkpoint_directory() {
    let snap = ring_snapshot().await;
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::create(dir.path()).unwrap();
    let mut a = snap.clone();
    a.id = 4;
    let mut b = snap.clone();
    b.id = 5;
    store.save_snapshot(&a).unwrap();
    store.save_snapshot(&b).unwrap();
    let bytes = fs::read(store.path_of(5)).unwrap();
    fs::write(store.path_of(6), &bytes[..bytes.len() - 10]).unwrap();

    // list: one line per checkpoint, valid or why not; exit 0.
    let out = inspector(&["list", s(dir.path())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let lines: Vec<&str> = o.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{o}");
    assert!(lines[0].trim_start().starts_with('4') && lines[0].contains("valid: 3 nodes"));
    assert!(lines[1].contains(&bytes.len().to_string()) && lines[1].contains("valid"));
    assert!(
        lines[2].contains("invalid") && lines[2].contains("truncated"),
        "{o}"
    );

    // verify DIR: exit 1, the bad file named with its reason, the good ones ok.
    let out = inspector(&["verify", s(dir.path())]);
    assert_eq!(out.status.code(), Some(1));
    let o = text(&out.stdout);
    assert_eq!(o.lines().filter(|l| l.starts_with("ok ")).count(), 2, "{o}");
    assert!(
        o.contains(&format!("BAD checkpoint {}", s(&store.path_of(6)))),
        "{o}"
    );
    assert!(text(&out.stderr).contains("1 of 3 checkpoint file(s) are invalid"));

    // verify FILE: ok, with id, version and checksum.
    let out = inspector(&["verify", s(&store.path_of(5))]);
    assert!(out.status.success());
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
    assert!(text(&out.stdout).contains(&format!(
        "snapshot 5, format version 1, {} bytes, crc32 {crc:#010x}",
        bytes.len()
    )));

    // inspect: nodes with type and state size, in-flight counts per channel, offsets.
    let out = inspector(&["inspect", s(&store.path_of(5))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    for n in &snap.nodes {
        let line = o
            .lines()
            .find(|l| l.contains(&format!(" {} ", n.name)))
            .expect("node line");
        assert!(
            line.contains("TokNode") && line.contains(&n.state.len().to_string()),
            "{line}"
        );
    }
    for c in &snap.channels {
        let from = &snap.nodes[c.from.0 as usize].name;
        let to = &snap.nodes[c.to.0 as usize].name;
        let line = o
            .lines()
            .find(|l| l.contains(&format!("{from} -> {to} ")))
            .expect("channel line");
        let cols: Vec<&str> = line.split_whitespace().collect();
        // id, from, ->, to, type, sent, delivered, in flight, bytes
        assert_eq!(cols[5], c.sent.to_string(), "{line}");
        assert_eq!(cols[6], c.delivered.to_string(), "{line}");
        assert_eq!(cols[7], c.messages.len().to_string(), "{line}");
    }
    assert!(o.contains(&format!(
        "total: {} in-flight messages",
        snap.in_flight_count()
    )));
}

#[actix::test]
async fn inspect_json_decodes_states_and_messages_without_the_types() {
    let snap = ring_snapshot().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(file_name(snap.id));
    fs::write(&file, snap.to_bytes()).unwrap();
    let out = inspector(&["inspect", "--json", s(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(doc["id"], snap.id);
    assert_eq!(doc["nodes"].as_array().unwrap().len(), 3);
    // States: the node books, field by field, as the actors recorded them.
    for (i, n) in doc["nodes"].as_array().unwrap().iter().enumerate() {
        let books: NodeBooks = snap.state::<TokNode>(&format!("n{i}")).unwrap();
        assert_eq!(n["name"], format!("n{i}"));
        assert_eq!(n["state"]["handled"], books.handled);
        assert_eq!(
            n["state"]["held"].as_array().unwrap().len(),
            books.held.len()
        );
        let injected: Vec<u64> = n["state"]["injected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(injected, books.injected.iter().copied().collect::<Vec<_>>());
    }
    // Messages: every recorded token, in order, with its fields.
    for c in doc["channels"].as_array().unwrap() {
        let from = c["from_name"].as_str().unwrap();
        let to = c["to_name"].as_str().unwrap();
        let toks: Vec<Tok> = snap.channel_messages(from, to).unwrap();
        let msgs = c["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), toks.len());
        assert_eq!(c["in_flight"], toks.len());
        for (m, t) in msgs.iter().zip(&toks) {
            assert_eq!(m["id"], t.id);
            assert_eq!(m["seq"], t.seq);
            assert_eq!(m["hops_left"], t.hops_left);
        }
    }
    assert_eq!(doc["ingress"].as_array().unwrap().len(), snap.ingress.len());
    assert_eq!(doc["ingress"][0]["offset"], snap.ingress[0].offset);
}

#[test]
fn bad_input_is_a_clear_error_and_exit_code_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.snap");
    for args in [
        vec!["inspect", s(&missing)],
        vec!["verify", s(&missing)],
        vec!["list", s(&missing)],
    ] {
        let out = inspector(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let e = text(&out.stderr);
        assert!(
            e.starts_with("actix-snapshot: error:") && e.contains("nope.snap"),
            "{e}"
        );
        assert!(!e.contains("panicked"), "{e}");
    }

    let garbage = dir.path().join("garbage.snap");
    fs::write(&garbage, b"definitely not a snapshot").unwrap();
    for args in [
        vec!["inspect", s(&garbage)],
        vec!["inspect", "--json", s(&garbage)],
        vec!["verify", s(&garbage)],
    ] {
        let out = inspector(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert!(e.contains("not a snapshot file: magic bytes"), "{e}");
        assert!(!e.contains("panicked"), "{e}");
    }

    // A directory with no checkpoints: list says so; verify fails.
    let empty = tempfile::tempdir().unwrap();
    let out = inspector(&["list", s(empty.path())]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("no checkpoints"));
    let out = inspector(&["verify", s(empty.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no checkpoint in"));

    // Usage errors come from clap, with its exit code 2.
    let out = inspector(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
