//! The `ferrite-migrate` binary: parses the command line and runs one
//! subcommand. Exit codes: 0 success, 1 differences found / run not
//! complete, 2 error.

use clap::Parser;
use ferrite_migrate::config::{Cli, Sub};
use ferrite_migrate::progress::Mode;
use ferrite_migrate::slots::SlotSet;
use ferrite_migrate::topo::Source;
use ferrite_migrate::{copy, plan, run, verify, Error, Result};

fn main() {
    let cli = Cli::parse();
    let code = match real_main(cli) {
        Ok(c) => c,
        Err(Error::Interrupted) => {
            eprintln!("ferrite-migrate: {}", Error::Interrupted);
            130
        }
        Err(e) => {
            eprintln!("ferrite-migrate: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn real_main(cli: Cli) -> Result<i32> {
    let cfg = cli.opts.resolve()?;
    let sub = cli.cmd.unwrap_or(Sub::Run);
    match sub {
        Sub::Run | Sub::Resume => {
            ferrite_migrate::install_interrupt_handler();
            let out = run::run(&cfg, sub == Sub::Resume)?;
            run::print_outcome(&out, cfg.mode);
            let ok = out.slots_flipped == out.slots_in_scope && out.verified != Some(false) && out.copy_errors == 0;
            Ok(if ok { 0 } else { 1 })
        }
        Sub::Plan => {
            let from = need_from(&cfg.from)?;
            let mut src = Source::connect(from, cfg.source_auth.clone(), cfg.timeout)?;
            let scope = cfg.slots.clone().unwrap_or_else(SlotSet::all);
            let p = plan::plan(&mut src, &scope, cfg.sample, cfg.big_key_bytes)?;
            if cfg.json {
                println!("{}", serde_json::to_string(&p).map_err(|e| Error::Other(e.to_string()))?);
            } else {
                plan::print(&p);
            }
            Ok(0)
        }
        Sub::Status => {
            let v = run::status(&cfg)?;
            if cfg.json {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v).map_err(|e| Error::Other(e.to_string()))?);
            }
            Ok(0)
        }
        Sub::Rollback => {
            let msg = run::rollback(&cfg)?;
            if cfg.json {
                println!("{}", serde_json::json!({ "result": msg }));
            } else {
                println!("{msg}");
            }
            Ok(0)
        }
        Sub::Verify => {
            // Source/target/scope from flags, else from the state file.
            let st = ferrite_migrate::state::State::load(&cfg.state).ok();
            let from = if cfg.from.is_empty() {
                st.as_ref().map(|s| s.source.clone()).unwrap_or_default()
            } else {
                cfg.from.clone()
            };
            let from = need_from(&from)?;
            let to = cfg
                .to
                .clone()
                .or_else(|| st.as_ref().map(|s| s.target.clone()))
                .ok_or_else(|| Error::Config("--to is required".into()))?;
            let scope = match (&cfg.slots, &st) {
                (Some(s), _) => s.clone(),
                (None, Some(st)) => st.scope_set(),
                (None, None) => SlotSet::all(),
            };
            let mut src = Source::connect(from, cfg.source_auth.clone(), cfg.timeout)?;
            src.retry_for = cfg.retry_for;
            let mut dst = copy::Target::connect(&to, cfg.timeout, &cfg.target_auth)?;
            if let Some(addr) = &cfg.metrics_listen {
                ferrite_migrate::metrics::serve(addr)?;
            }
            let mut rep = verify::verify(&mut src, &mut dst.conn, &scope, cfg.ttl_tolerance_ms, 100)?;
            // With proxies (flags or state file), keys that keep differing
            // are compared once more with their slot briefly paused.
            let proxies = if cfg.proxies.is_empty() {
                st.as_ref().map(|s| s.proxies.clone()).unwrap_or_default()
            } else {
                cfg.proxies.clone()
            };
            if !rep.diffs.is_empty() && !proxies.is_empty() {
                let mut px =
                    ferrite_migrate::proxy::Proxies::connect(&proxies, cfg.proxy_admin_password.clone(), cfg.timeout)?;
                if let Some(st) = &st {
                    px.epoch = px.epoch.max(st.epoch);
                }
                let diffs = std::mem::take(&mut rep.diffs);
                rep.diffs = run::recheck_paused(&mut src, &mut dst.conn, &mut px, diffs, cfg.ttl_tolerance_ms)?;
            }
            if cfg.mode == Mode::Json {
                let diffs: Vec<serde_json::Value> = rep
                    .diffs
                    .iter()
                    .map(
                        |d| serde_json::json!({"slot": d.slot, "key": String::from_utf8_lossy(&d.key), "diff": d.what}),
                    )
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "slots_checked": rep.slots_checked,
                        "slots_digest_mismatch": rep.slots_digest_mismatch,
                        "keys_source": rep.keys_source,
                        "keys_target": rep.keys_target,
                        "differences": rep.differences(),
                        "diffs": diffs,
                        "function_diffs": rep.functions,
                        "summary": rep.summary(),
                    })
                );
            } else {
                for d in &rep.functions {
                    println!("DIFF {d}");
                }
                for d in &rep.diffs {
                    println!("DIFF slot {} key {:?}: {}", d.slot, String::from_utf8_lossy(&d.key), d.what);
                }
                println!("{}", rep.summary());
            }
            Ok(if rep.differences() == 0 { 0 } else { 1 })
        }
    }
}

fn need_from(v: &[String]) -> Result<Vec<String>> {
    if v.is_empty() {
        Err(Error::Config("--from-redis-cluster is required".into()))
    } else {
        Ok(v.to_vec())
    }
}
