//! Key extraction from key specifications (Redis's `getKeysUsingKeySpecs`).

use crate::table::{BeginSearch, CommandMeta, FindKeys};
use smallvec::SmallVec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// The arguments don't fit the key specifications (bad numkeys, too few
    /// arguments); the command itself will report the precise error.
    Invalid,
}

/// Positions (indexes into `args`, where `args[0]` is the command name) of
/// the keys of a command call, in key-spec order.
///
/// `meta` must be the entry that applies (the subcommand entry for
/// container commands).
pub fn get_keys(meta: &CommandMeta, args: &[impl AsRef<[u8]>]) -> Result<SmallVec<[usize; 4]>, KeysError> {
    Ok(get_keys_by_spec(meta, args)?.into_iter().map(|(pos, _)| pos).collect())
}

/// Like [`get_keys`], with the index (in `meta.key_specs`) of the key
/// specification that found each key, so callers can read its flags
/// (ACL permission checks need RO/RW/access/update...).
pub fn get_keys_by_spec(
    meta: &CommandMeta,
    args: &[impl AsRef<[u8]>],
) -> Result<SmallVec<[(usize, usize); 4]>, KeysError> {
    let argc = args.len() as i64;
    let mut out: SmallVec<[(usize, usize); 4]> = SmallVec::new();
    for (spec_idx, spec) in meta.key_specs.iter().enumerate() {
        let first = match &spec.begin {
            BeginSearch::Index(i) => {
                if *i >= argc {
                    continue;
                }
                *i
            }
            BeginSearch::Keyword { keyword, startfrom } => {
                // Redis: forward from `startfrom` up to (not including) the
                // last argument, or backward from argc+startfrom down to 1.
                let (start, end) = if *startfrom > 0 { (*startfrom, argc - 1) } else { (argc + startfrom, 1) };
                let step = if start <= end { 1 } else { -1 };
                let mut found = None;
                let mut i = start;
                while i != end {
                    if i >= argc || i < 1 {
                        break;
                    }
                    if args[i as usize].as_ref().eq_ignore_ascii_case(keyword.as_bytes()) {
                        found = Some(i + 1);
                        break;
                    }
                    i += step;
                }
                match found {
                    Some(f) => f,
                    None => continue,
                }
            }
            BeginSearch::Unknown => return Err(KeysError::Invalid),
        };
        let (first, last, step) = match &spec.find {
            FindKeys::Range { lastkey, keystep, limit } => {
                let last = if *lastkey >= 0 {
                    first.checked_add(*lastkey).ok_or(KeysError::Invalid)?
                } else if *limit == 0 {
                    argc + lastkey
                } else {
                    first + ((argc - first) / limit + lastkey)
                };
                (first, last, *keystep)
            }
            FindKeys::Keynum { keynumidx, firstkey, keystep } => {
                let idx = first + keynumidx;
                if idx >= argc {
                    return Err(KeysError::Invalid);
                }
                let n = ferrite_resp::num::parse_i64(args[idx as usize].as_ref()).ok_or(KeysError::Invalid)?;
                if n < 0 || n >= argc {
                    return Err(KeysError::Invalid);
                }
                let f = first + firstkey;
                (f, f + (n - 1) * keystep, *keystep)
            }
            FindKeys::Unknown => return Err(KeysError::Invalid),
        };
        if step <= 0 {
            return Err(KeysError::Invalid);
        }
        let mut i = first;
        while i <= last {
            if i >= argc || i < 1 {
                return Err(KeysError::Invalid);
            }
            out.push((i as usize, spec_idx));
            i += step;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::table;

    fn keys(cmd: &str, args: &[&str]) -> Result<Vec<String>, KeysError> {
        let t = table();
        let mut meta = t.get(cmd.as_bytes()).unwrap();
        if !meta.subcommands.is_empty() {
            meta = meta.subcommand(args[1].as_bytes()).unwrap();
        }
        get_keys(meta, args).map(|v| v.into_iter().map(|i| args[i].to_string()).collect())
    }

    #[test]
    fn common_shapes() {
        assert_eq!(keys("get", &["get", "k"]).unwrap(), ["k"]);
        assert_eq!(keys("mset", &["mset", "a", "1", "b", "2"]).unwrap(), ["a", "b"]);
        assert_eq!(keys("del", &["del", "a", "b", "c"]).unwrap(), ["a", "b", "c"]);
        assert_eq!(
            keys("zunionstore", &["zunionstore", "d", "2", "a", "b", "WEIGHTS", "1", "2"]).unwrap(),
            ["d", "a", "b"]
        );
        assert_eq!(keys("zunionstore", &["zunionstore", "d", "x", "a"]), Err(KeysError::Invalid));
        assert_eq!(keys("blpop", &["blpop", "a", "b", "0"]).unwrap(), ["a", "b"]);
        assert_eq!(keys("object", &["object", "encoding", "k"]).unwrap(), ["k"]);
        assert_eq!(keys("xread", &["xread", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"]).unwrap(), ["s1", "s2"]);
        assert_eq!(keys("lmove", &["lmove", "a", "b", "LEFT", "RIGHT"]).unwrap(), ["a", "b"]);
    }
}
