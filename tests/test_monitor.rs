//! Invariant monitoring on a live bank: branches pass money around at random. A correct
//! bank must never be reported; a buggy branch that now and then creates money must be
//! caught at the first snapshot taken after it did. The branches keep their own books
//! (how much money each created), so each report is checked against what really happened,
//! not against the monitor.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use actix::{Actor, ActorContext, Context, Handler, Message};
use actix_snapshot::monitor::{Monitor, MonitorError, MonitorEvent, Violation};
use actix_snapshot::{
    GlobalSnapshot, Ingress, Out, Snapshot, SnapshotError, SnapshotGroup, SnapshotOptions,
};
use futures::StreamExt;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

const START_BALANCE: u64 = 1_000;

#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Transfer {
    amount: u64,
}

/// Block the branch's thread for that many milliseconds.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "()")]
struct Stall(u64);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Books {
    balance: u64,
    received: u64,
    /// Money this branch created out of thin air (the bug), by its own count.
    created: u64,
}

#[derive(Snapshot)]
#[snapshot(state = books, messages(Transfer, Stall))]
struct Branch {
    books: Books,
    outs: Vec<Out<Transfer>>,
    rng: SmallRng,
    /// Creates one unit of money on every `k`-th transfer received.
    bug_every: Option<u64>,
}

impl Actor for Branch {
    type Context = Context<Self>;
}

impl Handler<Transfer> for Branch {
    type Result = ();
    fn handle(&mut self, t: Transfer, _ctx: &mut Context<Self>) {
        self.books.received += 1;
        self.books.balance += t.amount;
        if let Some(k) = self.bug_every
            && self.books.received.is_multiple_of(k)
        {
            self.books.balance += 1;
            self.books.created += 1;
        }
        let amount = self.rng.random_range(0..=self.books.balance / 2);
        self.books.balance -= amount;
        let k = self.rng.random_range(0..self.outs.len());
        self.outs[k].send(Transfer { amount });
    }
}

impl Handler<Stall> for Branch {
    type Result = ();
    fn handle(&mut self, Stall(ms): Stall, _ctx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

struct Bank {
    group: SnapshotGroup,
    stall: Vec<Ingress<Stall>>,
    n: u64,
}

/// A full mesh of `n` branches on arbiters 0 and 1 (arbiter 2 is left for nodes a test
/// spawns); `buggy` (if any) creates money on every `bug_every`-th transfer. Each branch is
/// kicked `kicks` times, so that many transfers circulate per branch, forever.
fn bank(n: usize, buggy: Option<(usize, u64)>, kicks: usize, options: SnapshotOptions) -> Bank {
    let mut b = SnapshotGroup::builder();
    b.arbiters(3).snapshot_options(options);
    let nodes: Vec<_> = (0..n)
        .map(|i| b.node_on::<Branch>(format!("b{i}"), i % 2))
        .collect();
    let mut outs: Vec<Vec<Out<Transfer>>> = (0..n).map(|_| Vec::new()).collect();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                outs[i].push(b.channel(nodes[i], nodes[j]));
            }
        }
    }
    let kick: Vec<Ingress<Transfer>> = nodes
        .iter()
        .enumerate()
        .map(|(i, &r)| b.ingress(format!("kick{i}"), r))
        .collect();
    let stall = nodes
        .iter()
        .enumerate()
        .map(|(i, &r)| b.ingress(format!("stall{i}"), r))
        .collect();
    for (i, (r, outs)) in nodes.into_iter().zip(outs).enumerate() {
        let bug_every = buggy.filter(|(who, _)| *who == i).map(|(_, k)| k);
        b.actor(r, move |books: Option<Books>| Branch {
            books: books.unwrap_or(Books {
                balance: START_BALANCE,
                ..Books::default()
            }),
            outs,
            rng: SmallRng::seed_from_u64(i as u64),
            bug_every,
        });
    }
    let group = b.start().expect("valid topology");
    for k in &kick {
        for _ in 0..kicks {
            k.send(Transfer { amount: 0 }).expect("branch running");
        }
    }
    Bank {
        group,
        stall,
        n: n as u64,
    }
}

/// The invariant under test: money in branches plus money in flight is what we started with.
fn money_conserved(n: u64) -> impl Fn(&GlobalSnapshot) -> Result<(), Violation> {
    move |snap| {
        let held: u64 = snap
            .states::<Branch>()?
            .map(|b: Books| b.balance)
            .sum::<u64>();
        let moving: u64 = snap.in_flight::<Transfer>()?.map(|t| t.amount).sum();
        let expected = n * START_BALANCE;
        if held + moving == expected {
            Ok(())
        } else {
            Err(Violation::new(format!(
                "total money is {}, expected {expected}",
                held + moving
            )))
        }
    }
}

/// What the test saw in each snapshot the monitor checked, from the branches' own books.
#[derive(Debug, Clone, Copy)]
struct Seen {
    id: u64,
    created: u64,
    in_flight: usize,
}

fn observe(log: Rc<RefCell<Vec<Seen>>>) -> impl Fn(&GlobalSnapshot) -> Result<(), Violation> {
    move |snap| {
        let created = snap.states::<Branch>()?.map(|b| b.created).sum();
        log.borrow_mut().push(Seen {
            id: snap.id,
            created,
            in_flight: snap.in_flight_count(),
        });
        Ok(())
    }
}

async fn next_event(
    events: &mut futures::channel::mpsc::Receiver<MonitorEvent>,
    within: Duration,
) -> Option<MonitorEvent> {
    actix::clock::timeout(within, events.next())
        .await
        .ok()
        .flatten()
}

/// How many snapshots the monitor may take before it must have caught the buggy branch.
/// The branch creates money on every 1000th transfer it receives and transfers never stop,
/// so it does so within milliseconds (typically before the 3rd-5th snapshot; snapshots come
/// every 2 ms). The timing-free bound is asserted too: the violation is reported on the
/// very first snapshot in which the created money shows.
const CATCH_BOUND: u64 = 50;

#[actix::test]
async fn money_creating_branch_is_caught_at_the_first_snapshot_after_the_bug() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bank = bank(4, Some((2, 1000)), 3, SnapshotOptions::default());
    let log = Rc::new(RefCell::new(Vec::new()));
    let mut monitor = Monitor::builder(bank.group.clone())
        .every(Duration::from_millis(2))
        .check("observe", observe(log.clone()))
        .check("money conserved", money_conserved(bank.n))
        .store_violations_in(dir.path())
        .stop_on_violation(true)
        .start()
        .expect("monitor starts");
    let mut events = monitor.events().expect("events not taken yet");

    let Some(MonitorEvent::Violation(report)) =
        next_event(&mut events, Duration::from_secs(30)).await
    else {
        panic!("no violation reported; stats {:?}", monitor.stats());
    };
    assert_eq!(report.check, "money conserved");
    assert_eq!(report.snapshot_id, report.snapshot.id);

    // The report is right, by the branches' own books: the excess is what they created.
    let snap = &report.snapshot;
    let created: u64 = snap.states::<Branch>().unwrap().map(|b| b.created).sum();
    let total: u64 = snap
        .states::<Branch>()
        .unwrap()
        .map(|b| b.balance)
        .sum::<u64>()
        + snap
            .in_flight::<Transfer>()
            .unwrap()
            .map(|t| t.amount)
            .sum::<u64>();
    assert!(created > 0, "reported snapshot shows no created money");
    assert_eq!(total, bank.n * START_BALANCE + created);
    assert!(report.violation.message.contains(&total.to_string()));

    // Caught at the first snapshot in which the bug had happened, and within the bound.
    let log = log.borrow().clone();
    let first_bad = log
        .iter()
        .position(|s| s.created > 0)
        .expect("the observer saw the bad snapshot");
    assert_eq!(log[first_bad].id, report.snapshot_id);
    assert_eq!(report.checked, first_bad as u64 + 1);
    assert!(
        report.checked <= CATCH_BOUND,
        "caught only after {} snapshots",
        report.checked
    );
    assert!(log[..first_bad].iter().all(|s| s.created == 0));
    eprintln!(
        "bug caught at snapshot {} ({} snapshots checked; bound {CATCH_BOUND})",
        report.snapshot_id, report.checked
    );

    // The offending snapshot was stored, crash-safely, and reads back identical.
    let path = report.saved_to.clone().expect("snapshot stored");
    assert!(path.starts_with(dir.path()));
    let back = GlobalSnapshot::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(&back, snap.as_ref());
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        files, 1,
        "exactly the one snapshot file, no temp files left"
    );

    // stop_on_violation: the monitor ends, and so does its stream.
    assert!(
        next_event(&mut events, Duration::from_secs(10))
            .await
            .is_none()
    );
    let stats = monitor.stats();
    assert!(!stats.running);
    assert_eq!(stats.violations, 1);
    assert_eq!(stats.first_violation, Some(report.snapshot_id));
    assert_eq!(stats.checked, report.checked);
    bank.group.shutdown();
}

#[actix::test]
async fn correct_bank_is_never_reported_over_many_snapshots() {
    const SNAPSHOTS: u64 = 200;
    let bank = bank(4, None, 3, SnapshotOptions::default());
    let log = Rc::new(RefCell::new(Vec::new()));
    let violations = Rc::new(RefCell::new(0u32));
    let seen = violations.clone();
    let mut monitor = Monitor::builder(bank.group.clone())
        .every(Duration::from_millis(1))
        .check("observe", observe(log.clone()))
        .check("money conserved", money_conserved(bank.n))
        .on_event(move |e| {
            if matches!(e, MonitorEvent::Violation(_)) {
                *seen.borrow_mut() += 1;
            }
        })
        .start()
        .expect("monitor starts");
    let mut events = monitor.events().unwrap();
    while monitor.stats().checked < SNAPSHOTS {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    monitor.stop();
    let mut all = Vec::new();
    while let Some(e) = next_event(&mut events, Duration::from_secs(10)).await {
        all.push(e);
    }
    assert!(all.is_empty(), "unexpected events: {all:?}");
    assert_eq!(*violations.borrow(), 0);
    let stats = monitor.stats();
    assert_eq!(stats.violations, 0);
    assert_eq!(stats.snapshot_failures, 0);
    assert!(stats.checked >= SNAPSHOTS);
    // The check had real work: money was on the wire in many of the snapshots.
    let log = log.borrow();
    assert!(log.len() as u64 >= SNAPSHOTS);
    let with_money_moving = log.iter().filter(|s| s.in_flight > 0).count();
    assert!(
        with_money_moving > 10,
        "only {with_money_moving} snapshots had transfers in flight"
    );
    assert!(log.iter().all(|s| s.created == 0));
    // Snapshot ids increase: each check saw a new round.
    assert!(log.windows(2).all(|w| w[0].id < w[1].id));
    bank.group.shutdown();
}

#[actix::test]
async fn failed_rounds_are_reported_but_are_not_violations() {
    let bank = bank(
        3,
        None,
        1,
        SnapshotOptions::default().timeout(Duration::from_millis(50)),
    );
    let mut monitor = Monitor::start(
        bank.group.clone(),
        Duration::from_millis(5),
        money_conserved(bank.n),
    )
    .expect("monitor starts");
    let mut events = monitor.events().unwrap();
    while monitor.stats().checked < 3 {
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    // b1 (alone on arbiter 1) cannot record for 300 ms; b0 and b2 record when told to.
    bank.stall[1].send(Stall(300)).unwrap();
    let Some(MonitorEvent::SnapshotFailed { error, attempt }) =
        next_event(&mut events, Duration::from_secs(10)).await
    else {
        panic!("expected a failed round");
    };
    assert!(
        matches!(&error, SnapshotError::Timeout { missing, waited, .. }
            if *missing == ["b1".to_string()] && *waited == Duration::from_millis(50)),
        "{error:?}"
    );
    assert!(attempt > 3);
    // The monitor goes on: later rounds complete and are checked, without violation.
    let after = monitor.stats().checked;
    while monitor.stats().checked < after + 3 {
        actix::clock::sleep(Duration::from_millis(5)).await;
    }
    let stats = monitor.stats();
    assert!(stats.snapshot_failures >= 1);
    assert_eq!(stats.violations, 0);
    assert!(stats.running);
    drop(monitor); // dropping the handle stops the monitor
    while let Some(e) = next_event(&mut events, Duration::from_secs(10)).await {
        assert!(matches!(e, MonitorEvent::SnapshotFailed { .. }), "{e:?}");
    }
    let rounds = bank.group.stats().started;
    actix::clock::sleep(Duration::from_millis(30)).await;
    assert_eq!(bank.group.stats().started, rounds, "rounds after stop");
    bank.group.shutdown();
}

#[test]
fn starting_outside_an_arbiter_is_an_error() {
    let sys = actix::System::new();
    let group = sys.block_on(async { bank(2, None, 0, SnapshotOptions::default()).group });
    let outcome = std::thread::spawn(move || {
        Monitor::start(group, Duration::from_millis(5), |_| Ok(())).map(|_| ())
    })
    .join()
    .expect("no panic");
    assert!(matches!(outcome, Err(MonitorError::NoArbiter)));
}

#[actix::test]
async fn a_panicking_check_is_a_violation_and_the_monitor_goes_on() {
    let bank = bank(2, None, 1, SnapshotOptions::default());
    let mut monitor = Monitor::builder(bank.group.clone())
        .every(Duration::from_millis(2))
        .check("fragile", |snap: &GlobalSnapshot| {
            if snap.id.is_multiple_of(2) {
                panic!("even snapshot {}", snap.id);
            }
            Ok(())
        })
        .check("money conserved", money_conserved(bank.n))
        .start()
        .expect("monitor starts");
    let mut events = monitor.events().unwrap();
    let Some(MonitorEvent::Violation(report)) =
        next_event(&mut events, Duration::from_secs(10)).await
    else {
        panic!("expected a violation");
    };
    assert_eq!(report.check, "fragile");
    assert!(report.snapshot_id.is_multiple_of(2));
    assert_eq!(
        report.violation.message,
        format!("check panicked: even snapshot {}", report.snapshot_id)
    );
    while monitor.stats().checked < 6 {
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    let stats = monitor.stats();
    assert!(stats.running);
    // Only the fragile check failed, once per even snapshot id.
    assert!(stats.violations >= 2 && stats.violations <= stats.checked / 2 + 1);
    bank.group.shutdown();
}

/// A node outside the money flow: stops, or blocks its thread and panics, when told to.
#[derive(Snapshot)]
#[snapshot(state_type = (), state_fn = Self::state, messages(Order))]
struct Bystander;
impl Bystander {
    fn state(&self) {}
}
impl Actor for Bystander {
    type Context = Context<Self>;
}
#[derive(Message, Serialize, Deserialize)]
#[rtype(result = "()")]
enum Order {
    Stop,
    PanicAfter(u64),
}
impl Handler<Order> for Bystander {
    type Result = ();
    fn handle(&mut self, o: Order, ctx: &mut Context<Self>) {
        match o {
            Order::Stop => ctx.stop(),
            Order::PanicAfter(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                panic!("bystander blew up");
            }
        }
    }
}

#[actix::test]
async fn a_node_that_stops_is_no_failure_a_panic_fails_the_round_it_owed() {
    let bank = bank(3, None, 2, SnapshotOptions::default());
    let quitter = bank.group.spawn_on(2, "quitter", || Bystander).unwrap();
    let bomb = bank.group.spawn_on(2, "bomb", || Bystander).unwrap();
    // Per checked snapshot: id, whether it held the quitter and the bomb.
    let log = Rc::new(RefCell::new(Vec::<(u64, bool, bool)>::new()));
    let l = log.clone();
    let mut monitor = Monitor::builder(bank.group.clone())
        .every(Duration::from_millis(2))
        .check("money conserved", money_conserved(bank.n))
        .check("membership", move |snap: &GlobalSnapshot| {
            l.borrow_mut().push((
                snap.id,
                snap.node("quitter").is_ok(),
                snap.node("bomb").is_ok(),
            ));
            Ok(())
        })
        .start()
        .unwrap();
    let mut events = monitor.events().unwrap();
    let wait_checked = |more: u64| {
        let target = monitor.stats().checked + more;
        let stats = || monitor.stats().checked;
        async move {
            while stats() < target {
                actix::clock::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    wait_checked(3).await;

    // The quitter stops: it leaves the group; no round fails.
    quitter.do_send(Order::Stop);
    while log.borrow().last().is_none_or(|e| e.1) {
        actix::clock::sleep(Duration::from_millis(2)).await;
    }
    wait_checked(5).await;
    assert_eq!(
        monitor.stats().snapshot_failures,
        0,
        "{:?}",
        monitor.stats()
    );

    // The bomb blocks arbiter 2 for 300 ms, then panics: the round started meanwhile (the
    // branches record; the monitor starts one round every 2 ms) fails, naming it.
    bomb.do_send(Order::PanicAfter(300));
    let Some(MonitorEvent::SnapshotFailed { error, .. }) =
        next_event(&mut events, Duration::from_secs(10)).await
    else {
        panic!("expected a failed round; {:?}", monitor.stats());
    };
    let failed_round = match &error {
        SnapshotError::NodePanicked {
            round,
            node,
            reason,
        } => {
            assert_eq!(node, "bomb");
            assert!(reason.contains("bystander blew up"), "{reason}");
            *round
        }
        other => panic!("expected NodePanicked, got {other:?}"),
    };
    wait_checked(5).await;
    monitor.stop();
    let stats = monitor.stats();
    assert_eq!(stats.snapshot_failures, 1, "{stats:?}");
    assert_eq!(stats.violations, 0, "{stats:?}");
    // The stream ends with the monitor, with no other event than the one failure.
    let rest = next_event(&mut events, Duration::from_secs(10)).await;
    assert!(rest.is_none(), "unexpected event {rest:?}");

    // By the log: the quitter was in every snapshot until it left, in none after; the bomb
    // was in every snapshot before the failed round, in none after it.
    let log = log.borrow().clone();
    let left = log.iter().position(|e| !e.1).unwrap();
    assert!(left >= 3 && log[..left].iter().all(|e| e.1) && log[left..].iter().all(|e| !e.1));
    assert!(log.iter().all(|&(id, _, bomb)| bomb == (id < failed_round)));
    assert!(log.iter().filter(|e| e.0 > failed_round).count() >= 5);
    assert!(!quitter.is_alive() && !bomb.is_alive());
    bank.group.shutdown();
}
