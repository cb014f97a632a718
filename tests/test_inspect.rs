//! The `actix-snapshot` inspector binary, run as a process: output, JSON, exit codes and
//! error messages on good, corrupt and missing files.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use actix_snapshot::GlobalSnapshot;
use actix_snapshot::checkpoint::{CheckpointStore, FsStore, file_name};
use actix_snapshot::snapshot::FORMAT_VERSION;
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
        "snapshot 5, format version {FORMAT_VERSION}, {} bytes, crc32 {crc:#010x}",
        bytes.len()
    )));

    // inspect: nodes with their short type tag, state size and message counters; in-flight
    // counts per path; offsets. The numbers are checked against the actors' own books.
    let out = inspector(&["inspect", s(&store.path_of(5))]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let books: Vec<NodeBooks> = (0..3)
        .map(|i| snap.state::<TokNode>(&format!("n{i}")).unwrap())
        .collect();
    for (i, n) in snap.nodes.iter().enumerate() {
        let line = o
            .lines()
            .find(|l| l.contains(&format!(" {} ", n.name)))
            .expect("node line");
        let cols: Vec<&str> = line.split_whitespace().collect();
        // id, name, type, version, state bytes, sent, received, external
        assert_eq!(cols[0], n.id.0.to_string(), "{line}");
        assert_eq!(cols[2], "TokNode", "a short tag: {line}");
        assert_eq!(cols[4], n.state.len().to_string(), "{line}");
        let b = &books[i];
        assert_eq!(cols[5], b.sent.values().sum::<u64>().to_string(), "{line}");
        assert_eq!(
            cols[6],
            b.received.values().sum::<u64>().to_string(),
            "{line}"
        );
        // Injections come through named ingress, not from unnamed outside senders.
        assert_eq!(cols[7], "0", "{line}");
    }
    let mut shown = 0;
    for (f, t) in ring(3) {
        let sent = books[f as usize].sent.get(&t).copied().unwrap_or(0);
        let recv = books[t as usize].received.get(&f).copied().unwrap_or(0);
        let line = o.lines().find(|l| l.contains(&format!("n{f} -> n{t} ")));
        if sent == recv {
            assert!(line.is_none(), "a path with nothing in flight: {line:?}");
            continue;
        }
        let line = line.expect("path line");
        let cols: Vec<&str> = line.split_whitespace().collect();
        // from, ->, to, type, in flight, bytes
        assert_eq!(cols[3], "Tok", "{line}");
        assert_eq!(cols[4], (sent - recv).to_string(), "{line}");
        let path = snap
            .paths
            .iter()
            .find(|p| p.from.0 == u64::from(f) && p.to.0 == u64::from(t))
            .unwrap();
        let bytes: usize = path.messages.iter().map(|m| m.len()).sum();
        assert_eq!(cols[5], bytes.to_string(), "{line}");
        shown += 1;
    }
    assert!(shown > 0);
    assert!(o.contains(&format!("paths with messages in flight ({shown})")));
    assert!(o.contains(&format!(
        "total: {} in-flight messages",
        snap.in_flight_count()
    )));
    assert!(!o.contains("::"), "no module paths: {o}");
}

#[actix::test]
async fn a_path_from_a_departed_node_and_sparse_ids_are_shown() {
    // The ring's snapshot as it would be had n1 left before the cut while its messages to
    // n2 were still travelling: n1 is gone, its outgoing path stays, ids are 0 and 2.
    let snap = loop {
        let snap = ring_snapshot().await;
        if snap.paths.iter().any(|p| p.from.0 == 1) {
            break snap;
        }
    };
    let mut left = snap.clone();
    left.nodes.retain(|n| n.id.0 != 1);
    left.paths.retain(|p| p.to.0 != 1);
    left.ingress.retain(|i| i.to.0 != 1);
    let in_flight = left
        .paths
        .iter()
        .find(|p| p.from.0 == 1)
        .unwrap()
        .messages
        .len();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("left.snap");
    fs::write(&file, left.to_bytes()).unwrap();

    let out = inspector(&["inspect", s(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("nodes (2):"), "{o}");
    assert!(o.contains("next node id 3"), "{o}");
    let line = o
        .lines()
        .find(|l| l.contains("#1 -> n2 "))
        .expect("path from #1");
    assert_eq!(
        line.split_whitespace().nth(4),
        Some(in_flight.to_string().as_str())
    );
    let ids: Vec<&str> = o
        .lines()
        .filter(|l| l.contains(" TokNode "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, ["0", "2"]);

    let out = inspector(&["inspect", "--json", s(&file)]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let p = doc["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == 1)
        .unwrap();
    assert_eq!(p["from_name"], serde_json::Value::Null);
    assert_eq!(p["to_name"], "n2");
    assert_eq!(p["in_flight"], in_flight);
    assert_eq!(doc["next_node_id"], 3);

    let out = inspector(&["list", s(dir.path())]);
    assert!(out.status.success());
    let out = inspector(&["verify", s(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
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
    // States: the node books, field by field, as the actors recorded them; counters as
    // the books count them.
    for (i, n) in doc["nodes"].as_array().unwrap().iter().enumerate() {
        let books: NodeBooks = snap.state::<TokNode>(&format!("n{i}")).unwrap();
        assert_eq!(n["name"], format!("n{i}"));
        assert_eq!(n["id"], i);
        assert_eq!(n["actor_type"], "TokNode");
        assert_eq!(n["sent"], books.sent.values().sum::<u64>());
        assert_eq!(n["received"], books.received.values().sum::<u64>());
        assert_eq!(n["external"], 0);
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
    let paths = doc["paths"].as_array().unwrap();
    assert_eq!(paths.len(), snap.paths.len());
    assert!(!paths.is_empty());
    for c in paths {
        let from = c["from_name"].as_str().unwrap();
        let to = c["to_name"].as_str().unwrap();
        assert_eq!(c["message_type"], "Tok");
        let toks: Vec<Tok> = snap.path_messages(from, to).unwrap();
        assert!(!toks.is_empty());
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
