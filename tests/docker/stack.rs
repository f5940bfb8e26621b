//! The nightly run and the whole-stack restore end to end (issue 11, issue 7 case 7):
//! which run `restore --all` takes, run ids, whole-stack restore on a running stack,
//! hooks, notifications, the Prometheus textfile, `--json` documents, and the
//! progress observer of the library call.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::docker::{self as fx, project_volume, TestContainer};
use crate::util::mount::Mount;
use crate::util::*;

/// A repository with a config file; commands run without `-q` so plans and
/// summaries can be checked.
struct Stack {
    repo: Repo,
    config: PathBuf,
}

impl Stack {
    fn new(config: &str) -> Stack {
        let repo = Repo::new();
        let config_path = repo.dir.path().join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        Stack {
            repo,
            config: config_path,
        }
    }

    fn cmd(&self) -> Command {
        self.cmd_in(&self.repo.path())
    }

    /// [`Stack::cmd`] on another repository (a mirror).
    fn cmd_in(&self, repo: &Path) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--repo").arg(repo).arg("--config").arg(&self.config);
        c.env_remove("CBSNAP_REPO");
        c.env("HOME", self.repo.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `snapshot --all` with Docker unreachable.
    fn run_docker_down(&self, args: &[&str]) -> Output {
        self.cmd()
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .args(args)
            .output()
            .unwrap()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", out(o)))
}

fn run_ids(stack: &Stack) -> Vec<String> {
    let mut ids: Vec<String> = stack
        .repo
        .snapshots_json()
        .iter()
        .filter_map(|s| s["run_id"].as_str().map(str::to_string))
        .collect();
    ids.dedup();
    ids
}

fn config_for(project: &str, path: &Path, extra: &str) -> String {
    format!(
        "project = \"{project}\"\npaths = [\"{}\"]\n{extra}\n",
        path.display()
    )
}

#[test]
fn restore_all_takes_the_newest_complete_run_and_refuses_an_incomplete_one() {
    // A project without volumes: the engine must answer for the first run to be
    // complete.
    let _e = fx::engine();
    let project = fx::unique("cbt-empty");
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("workspace");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("notes"), b"night 1\n").unwrap();
    let other = work.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let stack = Stack::new(&format!(
        "project = \"{project}\"\npaths = [\"{}\", \"{}\"]\n",
        ws.display(),
        other.display()
    ));

    // Night 1: complete. Its --json summary has one result per source.
    let o = stack.run(&["--json", "snapshot", "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let night1 = json(&o);
    let src = &night1["sources"][0];
    assert_eq!(src["name"], "workspace", "{night1}");
    assert_eq!(src["status"], "ok");
    assert!(src["snapshot_id"].is_string());
    assert_eq!(src["bytes"], 8);
    assert_eq!(src["bytes_read"], 8);
    assert!(src["bytes_added"].as_u64().unwrap() > 0);
    assert!(src["duration_secs"].is_number() && src["errors"] == serde_json::json!([]));
    assert_eq!(
        night1["plan"]["expected"],
        serde_json::json!(["other", "workspace"])
    );

    // Night 2: Docker is down. The run holds only the workspace, and says so.
    std::fs::write(ws.join("notes"), b"night 2\n").unwrap();
    let o = stack.run_docker_down(&["snapshot", "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    // Night 3: a run with a wrong --project, night 4: one with --exclude.
    std::fs::write(ws.join("notes"), b"night 3\n").unwrap();
    let o = stack.run(&["snapshot", "--all", "--project", "no-such-project"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = stack.run(&["snapshot", "--all", "--exclude", "workspace"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ids = run_ids(&stack);
    assert_eq!(ids.len(), 4, "{ids:?}");

    // restore --all takes night 1, prints its plan first and says what it passed over.
    std::fs::write(ws.join("notes"), b"damaged\n").unwrap();
    let o = stack.run(&["restore", "--all", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let plan_at = out(&o)
        .find(&format!("restoring run {}", ids[0]))
        .unwrap_or_else(|| panic!("no plan: {}", out(&o)));
    assert!(out(&o)[plan_at..].contains("workspace@"));
    assert!(
        stderr(&o).contains("could not list volumes of"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("of project no-such-project"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("left out by --exclude: workspace"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(ws.join("notes")).unwrap(), b"night 1\n");

    // Asked for by id, the incomplete run is refused unless --incomplete.
    let o = stack.run(&["restore", "--all", "--force", "--run", &ids[1]]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is incomplete") && stderr(&o).contains("--incomplete"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(ws.join("notes")).unwrap(), b"night 1\n");
    let o = stack.run(&[
        "--json",
        "restore",
        "--all",
        "--force",
        "--run",
        &ids[1],
        "--incomplete",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(ws.join("notes")).unwrap(), b"night 2\n");
    let doc = json(&o);
    assert_eq!(doc["run"], ids[1].as_str());
    assert_eq!(doc["sources"][0]["name"], "workspace", "{doc}");
    assert_eq!(doc["sources"][0]["files"], 1, "{doc}");
}

#[test]
fn run_ids_are_shown_whole_and_an_ambiguous_prefix_lists_the_candidates() {
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("f"), b"x").unwrap();
    let stack = Stack::new(&config_for("cbt-ids", &ws, ""));
    for _ in 0..2 {
        // The engine's state does not matter here.
        let o = stack.run_docker_down(&["-q", "snapshot", "--all"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    }
    let ids = run_ids(&stack);
    assert_eq!(ids.len(), 2);
    let table = out(&stack.run(&["snapshots"]));
    for id in &ids {
        assert!(table.contains(id.as_str()), "{id} not in\n{table}");
    }
    let day = &ids[0][..8];
    let o = stack.run(&["restore", "--all", "--run", day]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&format!("2 runs start with {day}")), "{e}");
    assert!(e.contains(&ids[0]) && e.contains(&ids[1]), "{e}");
}

/// A busybox container of compose service `service` mounting each volume at
/// `/v/<i>`, running a writer.
fn service(project: &str, service: &str, depends_on: &str, volumes: &[&str]) -> TestContainer {
    fx::busybox_image();
    let name = fx::unique(&format!("cbt-{service}"));
    let mut args: Vec<String> = ["run", "-d", "--network", "none", "--stop-timeout", "2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--name".into(), name.clone()]);
    for (i, v) in volumes.iter().enumerate() {
        args.extend(["-v".into(), format!("{v}:/v/{i}")]);
    }
    let mut labels = vec![
        format!("com.docker.compose.project={project}"),
        format!("com.docker.compose.service={service}"),
    ];
    if !depends_on.is_empty() {
        labels.push(format!("com.docker.compose.depends_on={depends_on}"));
    }
    for l in labels {
        args.extend(["--label".into(), l]);
    }
    args.extend(
        [
            fx::BUSYBOX_IMAGE,
            "/bin/busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.2; done",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = fx::docker(&args);
    TestContainer { id, name }
}

#[test]
fn whole_stack_restore_checks_first_then_stops_every_container_once_in_dependency_order() {
    let _e = fx::engine();
    let project = fx::unique("cbt-stack");
    let db_vol = project_volume(&project, "db");
    let app_vol = project_volume(&project, "app");
    db_vol.populate("echo db-v1 > /data/f");
    app_vol.populate("echo app-v1 > /data/f");
    // app depends on db and mounts both volumes; db mounts its own.
    let db = service(&project, "db", "", &[&db_vol.name]);
    let app = service(
        &project,
        "app",
        "db:service_started:false",
        &[&db_vol.name, &app_vol.name],
    );
    let stack = Stack::new(&format!("project = \"{project}\"\npaths = []\n"));
    let o = stack.run(&["-q", "snapshot", "--all", "--quiesce", "none"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    db_vol.populate("echo db-v2 > /data/f");
    app_vol.populate("echo app-v2 > /data/f");

    // Without --stop: refused before anything is touched, naming both containers.
    let o = stack.run(&["restore", "--all"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("half-old stack") && e.contains("--stop"), "{e}");
    assert!(e.contains(&db.name) && e.contains(&app.name), "{e}");
    assert_eq!(db_vol.inspect_with("cat /data/f"), "db-v2");
    assert_eq!(app_vol.inspect_with("cat /data/f"), "app-v2");
    assert_eq!(db.state(), "running");
    assert_eq!(app.state(), "running");

    // A dry run without --stop shows the plan too, then why the restore would be
    // refused (exit 1). It showed only the refusal.
    let o = stack.run(&["restore", "--all", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(out(&o).contains("restoring run"), "{}", out(&o));
    assert!(out(&o).contains("db@"), "{}", out(&o));
    assert!(stderr(&o).contains("half-old stack"), "{}", stderr(&o));

    // --dry-run prints the plan and touches nothing.
    let o = stack.run(&["restore", "--all", "--stop", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        out(&o).contains(&format!("stops once before: {}, {}", app.name, db.name)),
        "{}",
        out(&o)
    );
    assert_eq!(db_vol.inspect_with("cat /data/f"), "db-v2");
    assert_eq!(db.state(), "running");

    // With --stop: each container stopped once (app first) and started once (db first).
    let since = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    let o = stack.run(&["restore", "--all", "--stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let until = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    assert_eq!(db_vol.inspect_with("cat /data/f"), "db-v1");
    assert_eq!(app_vol.inspect_with("cat /data/f"), "app-v1");
    assert_eq!(db.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(app.wait_for("running", Duration::from_secs(10)), "running");
    let events = fx::docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={}", db.id),
        "--filter",
        &format!("container={}", app.id),
        "--filter",
        "event=stop",
        "--filter",
        "event=start",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let seen: Vec<&str> = events.lines().collect();
    assert_eq!(
        seen,
        [
            format!("stop {}", app.name),
            format!("stop {}", db.name),
            format!("start {}", db.name),
            format!("start {}", app.name),
        ],
        "{events}"
    );
}

/// `restore --all --stop` whose one source fails (its disk fills up) keeps the stack
/// stopped, naming the containers and the command that finishes the restore; that
/// command, run once there is room, restores every source and starts them all.
/// The stack used to be started on one restored and one half-restored volume.
#[test]
fn a_whole_stack_restore_with_a_failed_source_keeps_the_stack_stopped() {
    held_stack_restore_is_finished(false);
}

/// As above, and the restore is finished from the repository's mirror (the local
/// repository lost): that restore takes the held stack over from the first
/// repository and starts it. It used to exit 0 and leave the stack stopped.
#[test]
fn a_whole_stack_restore_left_unfinished_is_finished_from_a_mirror() {
    held_stack_restore_is_finished(true);
}

fn held_stack_restore_is_finished(from_mirror: bool) {
    assert!(
        is_root(),
        "this test mounts a tmpfs over a volume's directory"
    );
    let _e = fx::engine();
    let project = fx::unique("cbt-held");
    let db_vol = project_volume(&project, "db");
    let app_vol = project_volume(&project, "app");
    db_vol.populate("echo db-v1 > /data/f");
    app_vol.populate("echo app-v1 > /data/f; head -c 4000000 /dev/urandom > /data/big");
    let stack = Stack::new(&format!("project = \"{project}\"\npaths = []\n"));
    let o = stack.run(&["-q", "snapshot", "--all", "--quiesce", "none"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mirror = stack.repo.dir.path().join("mirror");
    let o = stack
        .cmd()
        .arg("-q")
        .arg("mirror")
        .arg(&mirror)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let finishing = if from_mirror {
        mirror.clone()
    } else {
        stack.repo.path()
    };
    db_vol.populate("echo db-v2 > /data/f");
    // 1 MB of room where app's snapshot needs 4; its container sees the tmpfs.
    let full = Mount::tmpfs(&fx::mountpoint(&app_vol.name), "1m");
    let db = service(&project, "db", "", &[&db_vol.name]);
    let app = service(
        &project,
        "app",
        "db:service_started:false",
        &[&db_vol.name, &app_vol.name],
    );

    let o = stack.run(&["restore", "--all", "--stop"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("did not finish") && e.contains("restore --all --run"),
        "{e}"
    );
    assert!(e.contains(&db.name) && e.contains(&app.name), "{e}");
    assert!(!e.contains("starting containers again"), "{e}");
    // Each source is named as it ends: what an interrupted run finished shows.
    let said = format!("{}{e}", String::from_utf8_lossy(&o.stdout));
    assert!(said.contains("restored db@"), "{said}");
    assert!(said.contains("error: app to volume"), "{said}");
    assert_eq!(db.state(), "exited");
    assert_eq!(app.state(), "exited");
    let o = stack.run(&["recover"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(db.state(), "exited");

    drop(full);
    // `cbsnap --repo REPO restore --all --run ID --stop`; the stack's own command
    // line gives the repository.
    assert!(
        e.contains(&format!(
            "cbsnap --repo {} restore --all --run",
            stack.repo.path().display()
        )),
        "{e}"
    );
    let again = e
        .lines()
        .find_map(|l| {
            let at = l.find("restore --all --run")?;
            let rest = &l[at..];
            Some(rest[..rest.find('`')?].to_string())
        })
        .expect("the command that finishes the restore");
    let args: Vec<&str> = again.split(' ').collect();
    let o = stack.cmd_in(&finishing).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{again}: {}", stderr(&o));
    assert_eq!(db_vol.inspect_with("cat /data/f"), "db-v1");
    assert_eq!(app_vol.inspect_with("cat /data/f"), "app-v1");
    assert_eq!(db.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(app.wait_for("running", Duration::from_secs(10)), "running");
    let o = stack.run(&["recover"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for r in [stack.repo.path(), mirror] {
        assert!(
            !r.join("locks/quiesced.json").exists(),
            "{} holds nothing once the restore finished",
            r.display()
        );
    }
}

#[test]
fn exec_hooks_run_in_the_container_and_a_failing_pre_hook_skips_its_volume() {
    let _e = fx::engine();
    let project = fx::unique("cbt-hooks");
    let good = project_volume(&project, "good");
    let bad = project_volume(&project, "bad");
    let g = TestContainer::run(
        &good.name,
        &[
            ("cbsnap.exec-pre", "echo flushed > /data/pre-ran"),
            ("cbsnap.exec-post", "echo done > /data/post-ran"),
        ],
        "trap 'exit 0' TERM; while true; do sleep 0.2; done",
    );
    let b = TestContainer::run(
        &bad.name,
        &[
            ("cbsnap.exec-pre", "echo cannot flush >&2; exit 4"),
            ("cbsnap.exec-post", "touch /data/post-ran"),
        ],
        "trap 'exit 0' TERM; while true; do sleep 0.2; done",
    );
    assert_eq!(g.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(b.wait_for("running", Duration::from_secs(10)), "running");
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let marks = work.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let m = marks.display();
    let stack = Stack::new(&config_for(
        &project,
        &ws,
        &format!(
            "[hooks]\npre = \"echo $CBSNAP_RUN_ID > {m}/run-pre\"\npost = \"touch {m}/run-post\"\n\
             [hooks.path.\"{}\"]\npre = \"exit 9\"\npost = \"touch {m}/path-post\"\n",
            ws.display()
        ),
    ));
    let o = stack.run(&["--json", "snapshot", "--all"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let r = json(&o);
    let by_name = |n: &str| {
        r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {r}"))
            .clone()
    };
    assert_eq!(by_name("good")["status"], "ok", "{r}");
    let bad_r = by_name("bad");
    assert_eq!(bad_r["status"], "skipped", "{r}");
    let err = bad_r["errors"][0].as_str().unwrap();
    assert!(
        err.contains(&b.name) && err.contains("exit code 4") && err.contains("cannot flush"),
        "{err}"
    );
    assert_eq!(by_name("ws")["status"], "skipped", "{r}");
    // The run's host hooks ran, the path's post-hook ran although its pre failed.
    assert_eq!(
        std::fs::read_to_string(marks.join("run-pre"))
            .unwrap()
            .trim(),
        r["run_id"].as_str().unwrap()
    );
    assert!(marks.join("run-post").exists() && marks.join("path-post").exists());
    // The pre-hook's file is in the snapshot, the post-hook's is not (it ran after).
    let ls = stack.run(&["--json", "ls", "good@latest"]);
    let paths: Vec<String> = json(&ls)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(paths.contains(&"pre-ran".to_string()), "{paths:?}");
    assert!(!paths.contains(&"post-ran".to_string()), "{paths:?}");
    assert_eq!(good.inspect_with("cat /data/post-ran"), "done");
    // The failing volume's post-hook ran too, and its container was left running.
    assert_eq!(bad.inspect_with("ls /data"), "post-ran");
    assert_eq!(b.state(), "running");
    assert!(stack
        .repo
        .snapshots_json()
        .iter()
        .all(|s| s["name"] != "bad"));
}

/// A local HTTP server that records `METHOD PATH` and the body of each request.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let req: Vec<&str> = line.split_whitespace().collect();
                s.lock().unwrap().push((
                    format!("{} {}", req[0], req[1]),
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Recorder { port, seen }
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn a_failed_run_posts_its_summary_pings_fail_and_writes_the_metrics_file() {
    let server = Recorder::start();
    // A port nobody listens on: that notifier fails, the backup does not.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = server.port;
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("f"), vec![7u8; 5000]).unwrap();
    let metrics = work.path().join("cbsnap.prom");
    let stack = Stack::new(&config_for(
        "cbt-notify",
        &ws,
        &format!(
            "metrics_file = \"{}\"\n[notify]\nhealthcheck = \"http://127.0.0.1:{p}/hc\"\nntfy = \"http://127.0.0.1:{p}/topic\"\nwebhook = [\"http://127.0.0.1:{dead}/gone\"]\ntimeout_secs = 5\n",
            metrics.display()
        ),
    ));
    let hook = format!("http://127.0.0.1:{p}/hook");
    let o = stack.run_docker_down(&["snapshot", "--all", "--notify", &hook]);
    // The volumes failed (exit 1), not the notifier.
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "could not notify webhook http://127.0.0.1:{dead}/gone"
        )),
        "{}",
        stderr(&o)
    );
    let reqs = server.requests();
    let paths: Vec<&str> = reqs.iter().map(|(r, _)| r.as_str()).collect();
    assert!(paths.contains(&"POST /hc/fail"), "{paths:?}");
    assert!(paths.contains(&"POST /topic"), "{paths:?}");
    let (_, body) = reqs
        .iter()
        .find(|(r, _)| r == "POST /hook")
        .expect("webhook called");
    let summary: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["plan"]["project"], "cbt-notify");
    let ws_result = summary["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ws")
        .unwrap();
    assert_eq!(ws_result["status"], "ok");

    // The textfile parses as node_exporter reads it.
    let text = std::fs::read_to_string(&metrics).unwrap();
    let mut values = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').expect("name{labels} value");
        assert!(key.starts_with("cbsnap_") && key.ends_with('}'), "{line}");
        values.insert(key.to_string(), value.parse::<f64>().expect("a number"));
    }
    assert_eq!(values["cbsnap_run_success{project=\"cbt-notify\"}"], 0.0);
    let src = "{project=\"cbt-notify\",source=\"ws\"}";
    assert_eq!(values[&format!("cbsnap_source_bytes{src}")], 5000.0);
    assert_eq!(values[&format!("cbsnap_source_success{src}")], 1.0);
    assert!(values[&format!("cbsnap_source_bytes_added{src}")] > 0.0);
    assert!(values[&format!("cbsnap_source_last_success_timestamp_seconds{src}")] > 1.7e9);
    assert!(
        !values
            .keys()
            .any(|k| k.starts_with("cbsnap_run_last_success")),
        "no complete run yet: {text}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".cbsnap-metrics")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_successful_run_pings_the_healthcheck_url_itself() {
    let _e = fx::engine();
    let server = Recorder::start();
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let project = fx::unique("cbt-ok");
    let stack = Stack::new(&config_for(
        &project,
        &ws,
        &format!(
            "[notify]\nhealthcheck = \"http://127.0.0.1:{}/hc\"\n",
            server.port
        ),
    ));
    let o = stack.run(&["-q", "snapshot", "--all"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].0, "POST /hc/start");
    assert_eq!(reqs[1].0, "POST /hc");
    assert!(reqs[1].1.contains(": ok,"), "{}", reqs[1].1);
}

/// Records what the library reports to its observer.
#[derive(Default)]
struct Recording {
    progress: Mutex<Vec<(usize, usize, String)>>,
    bars: Mutex<Vec<cbsnap::progress::Progress>>,
    notes: Mutex<Vec<String>>,
}

impl cbsnap::run::Observer for Recording {
    fn progress(&self, index: usize, count: usize, name: &str) -> cbsnap::progress::Progress {
        self.progress
            .lock()
            .unwrap()
            .push((index, count, name.to_string()));
        let p = cbsnap::progress::Progress::hidden();
        self.bars.lock().unwrap().push(p.clone());
        p
    }
    fn note(&self, message: &str) {
        self.notes.lock().unwrap().push(message.to_string());
    }
}

#[test]
fn snapshot_all_is_a_library_call_that_counts_sources_and_says_what_it_pauses() {
    let engine = fx::engine();
    let project = fx::unique("cbt-lib");
    let vol = project_volume(&project, "data");
    vol.populate("echo hi > /data/f; mkdir /data/d; echo hello > /data/d/g");
    let c = TestContainer::writer(&vol.name, &[]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("f"), b"x").unwrap();
    let repo_dir = work.path().join("repo");
    cbsnap::Repository::init(&repo_dir).unwrap();
    let repo = cbsnap::Repository::open(&repo_dir, cbsnap::repo::Access::Append).unwrap();
    let opts = cbsnap::run::backup::AllOptions {
        project: project.clone(),
        volumes: None,
        paths: vec![ws.clone()],
        exclude_config: vec![],
        exclude_flag: vec![],
        via: cbsnap::volume::Via::Auto,
        quiesce: cbsnap::docker::QuiesceMode::Pause,
        tags: vec![],
        hooks: Default::default(),
    };
    let seen = Recording::default();
    let r = cbsnap::run::backup::snapshot_all(&repo, Ok(&engine), &opts, &seen).unwrap();
    assert_eq!(r.status, cbsnap::run::backup::SourceStatus::Ok, "{r:?}");
    assert_eq!(r.plan.expected, ["data", "ws"]);
    assert_eq!(
        *seen.progress.lock().unwrap(),
        [(1, 2, "data".to_string()), (2, 2, "ws".to_string())]
    );
    let notes = seen.notes.lock().unwrap().join("\n");
    assert!(
        notes.contains(&format!("data: pausing {} while it is read", c.name)),
        "{notes}"
    );
    assert_eq!(r.sources[0].consistency.as_deref(), Some("paused"));
    // Without a parent, the total comes from a quick count of the files; the path
    // source's is exact, the volume's at least what was there before the writer.
    let bars = seen.bars.lock().unwrap();
    assert!(bars[0].total() >= 9, "volume total {}", bars[0].total());
    assert_eq!(bars[1].total(), 1);
    // The next run takes the total from the parent snapshot.
    std::fs::write(ws.join("f"), b"xy").unwrap();
    drop(bars);
    let again = Recording::default();
    cbsnap::run::backup::snapshot_all(&repo, Ok(&engine), &opts, &again).unwrap();
    assert_eq!(
        again.bars.lock().unwrap()[1].total(),
        1,
        "the parent's size"
    );
}

#[test]
fn restore_stop_stops_a_container_whatever_its_quiesce_label_says() {
    let _e = fx::engine();
    let project = fx::unique("cbt-label");
    let vol = project_volume(&project, "data");
    vol.populate("echo v1 > /data/f");
    // `none` is how to read it; a restore must still stop it.
    let c = TestContainer::writer(&vol.name, &[("cbsnap.quiesce", "none")]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
    let stack = Stack::new(&format!("project = \"{project}\"\npaths = []\n"));
    let o = stack.run(&["-q", "snapshot", &vol.name]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let since = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    let o = stack.run(&["-q", "restore", "data@latest", "--stop"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let until = fx::docker(&["system", "info", "-f", "{{.SystemTime}}"]);
    let events = fx::docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        &format!("container={}", c.id),
        "--filter",
        "event=stop",
        "--filter",
        "event=start",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(events.lines().collect::<Vec<_>>(), ["stop", "start"]);
    assert_eq!(c.wait_for("running", Duration::from_secs(10)), "running");
}

/// A container hook that hangs ends at its container's `cbsnap.exec-timeout` (an
/// hour without one): its volume is skipped, naming the hook and the limit, and the
/// run goes on. It held the run, and the repository's lock, for the exec API's
/// seven-day timeout. A label that is not a number of seconds skips its volume too.
#[test]
fn a_hanging_exec_hook_ends_at_its_limit_and_skips_its_volume() {
    let _e = fx::engine();
    let project = fx::unique("cbt-hang");
    let slow = project_volume(&project, "slow");
    let odd = project_volume(&project, "odd");
    let s = TestContainer::run(
        &slow.name,
        &[
            ("cbsnap.exec-pre", "sleep 1000"),
            ("cbsnap.exec-timeout", "2"),
        ],
        "trap 'exit 0' TERM; while true; do sleep 0.2; done",
    );
    let o = TestContainer::run(
        &odd.name,
        &[("cbsnap.exec-pre", "true"), ("cbsnap.exec-timeout", "soon")],
        "trap 'exit 0' TERM; while true; do sleep 0.2; done",
    );
    assert_eq!(s.wait_for("running", Duration::from_secs(10)), "running");
    assert_eq!(o.wait_for("running", Duration::from_secs(10)), "running");
    let work = tempfile::tempdir().unwrap();
    let ws = work.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let stack = Stack::new(&config_for(&project, &ws, ""));
    let started = std::time::Instant::now();
    let out = stack.run(&["--json", "snapshot", "--all"]);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the run waited {:?} for a hook limited to 2 s",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r = json(&out);
    let by_name = |n: &str| {
        r["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap_or_else(|| panic!("no {n} in {r}"))
            .clone()
    };
    let slow_r = by_name("slow");
    assert_eq!(slow_r["status"], "skipped", "{r}");
    let err = slow_r["errors"][0].as_str().unwrap();
    assert!(
        err.contains("sleep 1000") && err.contains("within 2 s"),
        "{err}"
    );
    let odd_r = by_name("odd");
    assert_eq!(odd_r["status"], "skipped", "{r}");
    assert!(
        odd_r["errors"][0]
            .as_str()
            .unwrap()
            .contains("cbsnap.exec-timeout"),
        "{r}"
    );
    assert_eq!(by_name("ws")["status"], "ok", "{r}");
}

/// SIGTERM during the second source of a `restore --all` (the upload into a
/// bind-backed volume, which goes through a helper container): the first source,
/// restored through its mountpoint before, was said on stdout as it ended. A signal
/// ended the run before it said anything of what it had finished.
#[test]
fn an_interrupted_whole_stack_restore_has_said_what_it_finished() {
    use std::sync::atomic::Ordering;
    assert!(
        is_root(),
        "the first volume is restored through its mountpoint"
    );
    let _e = fx::engine();
    let project = fx::unique("cbt-said");
    let first = project_volume(&project, "a");
    first.populate("echo a > /data/f");
    let device = tempfile::tempdir().unwrap();
    let second = fx::bound_volume(
        &format!("{project}_b"),
        device.path(),
        &[
            ("com.docker.compose.project", &project),
            ("cbsnap.test", "1"),
        ],
    );
    second.populate("echo b > /data/f");
    let stack = Stack::new(&format!("project = \"{project}\"\npaths = []\n"));
    let o = stack.run(&["-q", "snapshot", "--all", "--quiesce", "none"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let (proxy, pid) =
        super::unfinished_restore::signal_at("PUT /", libc::SIGTERM, Duration::from_secs(2));
    let child = stack
        .cmd()
        .env("DOCKER_HOST", proxy.host())
        .args(["restore", "--all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    pid.store(child.id(), Ordering::SeqCst);
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(
        proxy.fired().is_some_and(|f| f.ends_with(": 0")),
        "the signal must land during the second source: {e}"
    );
    assert_eq!(o.status.code(), Some(143), "{e}");
    let out = out(&o);
    assert!(out.contains("restored a@"), "stdout: {out}\nstderr: {e}");
    assert!(!out.contains("restored b@"), "stdout: {out}");
    drop(second);
}
