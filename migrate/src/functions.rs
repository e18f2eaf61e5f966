//! Function libraries (`FUNCTION LOAD`): read from every source master,
//! copied to Ferrite before the data, compared by `verify`, counted by
//! `plan`.
//!
//! Redis Cluster does not propagate libraries between masters, so each
//! master is read (`FUNCTION LIST WITHCODE`). When the masters disagree, the
//! union by library name is used (with a warning); one name with two
//! different codes is an error (which one to keep is the operator's call).
//! The copy is `FUNCTION DUMP` on the masters (one per distinct set of
//! libraries) and `FUNCTION RESTORE <payload> REPLACE` on Ferrite: libraries
//! of the same name on Ferrite are replaced, others are kept (and `verify`
//! reports them as extra). Scripts (`EVAL`/`SCRIPT LOAD`) are not copied:
//! the script cache is not data, clients load scripts again.

use crate::resp::{Conn, Reply};
use crate::topo::Source;
use crate::{cmd, Error, Result};
use std::collections::BTreeMap;

/// One library as `FUNCTION LIST WITHCODE` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    pub engine: Vec<u8>,
    pub code: Vec<u8>,
    /// (name, description, sorted flags), sorted by name.
    pub functions: Vec<(Vec<u8>, Vec<u8>, Vec<Vec<u8>>)>,
}

/// Libraries by name.
pub type Libraries = BTreeMap<Vec<u8>, Library>;

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parse a `FUNCTION LIST WITHCODE` reply (RESP2 maps as flat arrays).
pub fn parse_list(r: &Reply) -> Libraries {
    let bytes = |r: Option<&Reply>| r.and_then(Reply::as_bytes).unwrap_or_default().to_vec();
    let mut out = Libraries::new();
    for lib in r.items() {
        let mut functions: Vec<(Vec<u8>, Vec<u8>, Vec<Vec<u8>>)> = lib
            .field("functions")
            .map(Reply::items)
            .unwrap_or_default()
            .iter()
            .map(|f| {
                let mut flags: Vec<Vec<u8>> = f
                    .field("flags")
                    .map(Reply::items)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|x| x.as_bytes().map(<[u8]>::to_vec))
                    .collect();
                flags.sort();
                (bytes(f.field("name")), bytes(f.field("description")), flags)
            })
            .collect();
        functions.sort();
        out.insert(
            bytes(lib.field("library_name")),
            Library { engine: bytes(lib.field("engine")), code: bytes(lib.field("library_code")), functions },
        );
    }
    out
}

/// The libraries of one server.
pub fn list(conn: &mut Conn) -> Result<Libraries> {
    let r = conn.cmd(&cmd!["FUNCTION", "LIST", "WITHCODE"])?.ok()?;
    Ok(parse_list(&r))
}

/// The source's libraries: the union over its masters.
#[derive(Debug, Default)]
pub struct SourceLibraries {
    pub libs: Libraries,
    /// Per master: its address and library names (in the topology's order).
    pub per_master: Vec<(String, Vec<Vec<u8>>)>,
    /// The masters do not all hold the same libraries.
    pub warnings: Vec<String>,
    /// Library names with different codes on two masters.
    pub conflicts: Vec<String>,
}

/// Read every source master's libraries and merge them by name.
pub fn source_libraries(src: &mut Source) -> Result<SourceLibraries> {
    let mut out = SourceLibraries::default();
    let masters: Vec<String> = src.topo.masters.iter().map(|m| m.addr.clone()).collect();
    let mut from: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for addr in masters {
        let libs = match list(src.conn(&addr)?) {
            Ok(l) => l,
            // Redis before 7.0 has no functions.
            Err(Error::Server(e)) if e.to_ascii_lowercase().contains("unknown command") => Libraries::new(),
            Err(Error::Server(e)) => {
                return Err(Error::Other(format!("{addr}: FUNCTION LIST WITHCODE refused: {e}")));
            }
            Err(e) => return Err(e),
        };
        for (name, lib) in &libs {
            match out.libs.get(name) {
                Some(have) if have != lib => {
                    let first = from.get(name).cloned().unwrap_or_default();
                    out.conflicts.push(format!(
                        "function library {} differs between source masters {first} and {addr}",
                        show(name)
                    ));
                }
                Some(_) => {}
                None => {
                    from.insert(name.clone(), addr.clone());
                    out.libs.insert(name.clone(), lib.clone());
                }
            }
        }
        out.per_master.push((addr, libs.into_keys().collect()));
    }
    let all: Vec<&Vec<u8>> = out.libs.keys().collect();
    let partial: Vec<String> = out
        .per_master
        .iter()
        .filter(|(_, names)| names.len() != all.len())
        .map(|(addr, names)| format!("{addr} has [{}]", names.iter().map(|n| show(n)).collect::<Vec<_>>().join(", ")))
        .collect();
    if !partial.is_empty() {
        out.warnings.push(format!(
            "source masters hold different function libraries ({}); using the union [{}]",
            partial.join("; "),
            all.iter().map(|n| show(n)).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(out)
}

/// What [`copy`] did.
#[derive(Debug, Default)]
pub struct Copied {
    pub libraries: usize,
    pub warnings: Vec<String>,
}

/// Copy the source's libraries to Ferrite: `FUNCTION DUMP` on one master per
/// distinct set of libraries, `FUNCTION RESTORE payload REPLACE` on Ferrite.
/// Errors when one library name has two codes on the source.
pub fn copy(src: &mut Source, dst: &mut Conn) -> Result<Copied> {
    let sl = source_libraries(src)?;
    if !sl.conflicts.is_empty() {
        return Err(Error::Other(format!(
            "{}: make the masters agree (FUNCTION LOAD REPLACE) and run again",
            sl.conflicts.join("; ")
        )));
    }
    let mut done: Vec<&Vec<Vec<u8>>> = Vec::new();
    for (addr, names) in &sl.per_master {
        if names.is_empty() || done.contains(&names) {
            continue;
        }
        done.push(names);
        let payload = src.conn(addr)?.cmd(&cmd!["FUNCTION", "DUMP"])?.ok()?;
        let Some(p) = payload.as_bytes() else {
            return Err(Error::Protocol(format!("{addr}: FUNCTION DUMP gave no payload")));
        };
        dst.cmd(&[&b"FUNCTION"[..], b"RESTORE", p, b"REPLACE"])?
            .ok()
            .map_err(|e| Error::Other(format!("Ferrite refused the function libraries of {addr}: {e}")))?;
    }
    Ok(Copied { libraries: sl.libs.len(), warnings: sl.warnings })
}

/// Differences between two sets of libraries (source, target).
pub fn diff(a: &Libraries, b: &Libraries) -> Vec<String> {
    let mut out = Vec::new();
    for (name, la) in a {
        let n = show(name);
        match b.get(name) {
            None => out.push(format!("function library {n}: missing on target")),
            Some(lb) if la.engine != lb.engine => out.push(format!(
                "function library {n}: engine differs: source {} target {}",
                show(&la.engine),
                show(&lb.engine)
            )),
            Some(lb) if la.code != lb.code => out.push(format!("function library {n}: code differs")),
            Some(lb) if la.functions != lb.functions => {
                out.push(format!("function library {n}: functions (names, descriptions, flags) differ"))
            }
            Some(_) => {}
        }
    }
    for name in b.keys() {
        if !a.contains_key(name) {
            out.push(format!("function library {}: extra on target", show(name)));
        }
    }
    out
}

/// `verify`'s comparison: the source's union against Ferrite's libraries,
/// plus source-side conflicts.
pub fn compare(src: &mut Source, dst: &mut Conn) -> Result<Vec<String>> {
    let sl = source_libraries(src)?;
    let mut out = sl.conflicts;
    out.extend(diff(&sl.libs, &list(dst)?));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(name: &str, code: &str, fns: &[(&str, &[&str])]) -> Reply {
        let b = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        Reply::Array(vec![
            b("library_name"),
            b(name),
            b("engine"),
            b("LUA"),
            b("functions"),
            Reply::Array(
                fns.iter()
                    .map(|(f, flags)| {
                        Reply::Array(vec![
                            b("name"),
                            b(f),
                            b("description"),
                            Reply::Nil,
                            b("flags"),
                            Reply::Array(flags.iter().map(|x| b(x)).collect()),
                        ])
                    })
                    .collect(),
            ),
            b("library_code"),
            b(code),
        ])
    }

    #[test]
    fn list_parsing_and_diff() {
        let a = parse_list(&Reply::Array(vec![
            lib("l1", "code1", &[("f2", &["no-writes", "allow-stale"]), ("f1", &[])]),
            lib("l2", "code2", &[("g", &[])]),
        ]));
        // Order of libraries, functions and flags does not matter.
        let b = parse_list(&Reply::Array(vec![
            lib("l2", "code2", &[("g", &[])]),
            lib("l1", "code1", &[("f1", &[]), ("f2", &["allow-stale", "no-writes"])]),
        ]));
        assert_eq!(a.len(), 2);
        assert!(diff(&a, &b).is_empty());
        let c = parse_list(&Reply::Array(vec![lib("l1", "other", &[]), lib("l3", "x", &[])]));
        let d = diff(&a, &c);
        assert_eq!(
            d,
            vec![
                "function library l1: code differs".to_string(),
                "function library l2: missing on target".into(),
                "function library l3: extra on target".into()
            ]
        );
        assert!(parse_list(&Reply::Error("ERR x".into())).is_empty());
    }
}
