//! A small typed reply tree, used to store Redis's COMMAND/COMMAND DOCS
//! replies as data and to re-encode them in RESP2 or RESP3.

use ferrite_resp::ReplyBuf;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Int(i64),
    Bulk(String),
    Simple(String),
    Double(String),
    Null,
    Array(Vec<Node>),
    Set(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Decode the typed JSON written by `tools/gen_command_table.py`.
    pub fn from_json(v: &Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Int(*b as i64),
            Value::Number(n) => Node::Int(n.as_i64().unwrap_or(0)),
            Value::String(s) => Node::Bulk(s.clone()),
            Value::Array(a) => Node::Array(a.iter().map(Node::from_json).collect()),
            Value::Object(o) => {
                if let Some(Value::String(s)) = o.get("s") {
                    Node::Simple(s.clone())
                } else if let Some(Value::String(s)) = o.get("d") {
                    Node::Double(s.clone())
                } else if let Some(Value::Array(a)) = o.get("set") {
                    Node::Set(a.iter().map(Node::from_json).collect())
                } else if let Some(Value::Array(a)) = o.get("m") {
                    Node::Map(
                        a.iter()
                            .filter_map(|kv| match kv {
                                Value::Array(p) if p.len() == 2 => {
                                    Some((Node::from_json(&p[0]), Node::from_json(&p[1])))
                                }
                                _ => None,
                            })
                            .collect(),
                    )
                } else {
                    Node::Null
                }
            }
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Bulk(s) | Node::Simple(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Node::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Items of an array or set.
    pub fn items(&self) -> &[Node] {
        match self {
            Node::Array(v) | Node::Set(v) => v,
            _ => &[],
        }
    }

    /// Look up a key in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(kv) => kv.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut ReplyBuf) {
        match self {
            Node::Int(i) => out.int(*i),
            Node::Bulk(s) => out.bulk(s.as_bytes()),
            Node::Simple(s) => out.simple(s.as_bytes()),
            Node::Double(s) => {
                if out.resp3 {
                    out.raw(b",");
                    out.raw(s.as_bytes());
                    out.raw(b"\r\n");
                } else {
                    out.bulk(s.as_bytes())
                }
            }
            Node::Null => out.null(),
            Node::Array(v) => {
                out.array(v.len());
                v.iter().for_each(|n| n.encode(out));
            }
            Node::Set(v) => {
                out.set(v.len());
                v.iter().for_each(|n| n.encode(out));
            }
            Node::Map(kv) => {
                out.map(kv.len());
                for (k, v) in kv {
                    k.encode(out);
                    v.encode(out);
                }
            }
        }
    }
}
