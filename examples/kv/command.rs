//! Commands: a request's arguments checked as redis-server 7 checks them
//! (arity, options, integers) into a [`Command`], then split into per-shard
//! [`ShardOp`]s ([`Command::split`]) and the shards' answers merged into
//! one reply in the request's key order ([`Plan::merge`]).

use crate::resp::{parse_i64, Reply};
use crate::store::{shard_of, SetCondition, SetExpiry, ShardOp, ShardReply, NOT_AN_INTEGER};

/// A checked request.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Answered without a shard (PING, ECHO, errors).
    Reply(Reply),
    /// `+OK`, then the connection closes.
    Quit,
    /// Runs on the shard that owns the key.
    Keyed(ShardOp),
    /// DEL keys.
    Del(Vec<Vec<u8>>),
    /// EXISTS keys.
    Exists(Vec<Vec<u8>>),
    /// MGET keys.
    MGet(Vec<Vec<u8>>),
    /// MSET pairs.
    MSet(Vec<(Vec<u8>, Vec<u8>)>),
    /// DBSIZE: every shard.
    DbSize,
    /// FLUSHALL: every shard.
    FlushAll,
}

fn wrong_arity(name: &str) -> Command {
    Command::Reply(Reply::err(format_args!(
        "wrong number of arguments for '{name}' command"
    )))
}

fn syntax_error() -> Command {
    Command::Reply(Reply::err("syntax error"))
}

/// redis 7's answer to a command it does not know.
fn unknown(args: &[Vec<u8>]) -> Command {
    let mut listed = String::new();
    for arg in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        let text = String::from_utf8_lossy(arg);
        let cut: String = text.chars().take(room).collect();
        listed.push_str(&format!("'{cut}' "));
    }
    let name: String = String::from_utf8_lossy(&args[0])
        .chars()
        .take(128)
        .collect();
    Command::Reply(Reply::err(format_args!(
        "unknown command '{name}', with args beginning with: {listed}"
    )))
}

/// Checks a request (non-empty `args`) into a [`Command`].
pub fn parse(mut args: Vec<Vec<u8>>) -> Command {
    let name = args[0].to_ascii_lowercase();
    let n = args.len();
    // (name, redis arity: exact if positive, at least -arity if negative)
    let arity: i32 = match name.as_slice() {
        b"ping" | b"flushall" | b"quit" => -1,
        b"echo" | b"get" | b"incr" | b"ttl" => 2,
        b"set" | b"mset" | b"expire" => -3,
        b"del" | b"exists" | b"mget" => -2,
        b"dbsize" => 1,
        _ => return unknown(&args),
    };
    let name = String::from_utf8_lossy(&name).into_owned();
    if (arity > 0 && n != arity as usize) || (arity < 0 && n < arity.unsigned_abs() as usize) {
        return wrong_arity(&name);
    }
    let mut rest = args.drain(1..);
    match name.as_str() {
        "ping" => match (rest.next(), rest.next()) {
            (None, _) => Command::Reply(Reply::Simple("PONG")),
            (Some(message), None) => Command::Reply(Reply::Bulk(Some(message))),
            _ => wrong_arity(&name),
        },
        "echo" => Command::Reply(Reply::Bulk(rest.next())),
        "quit" => Command::Quit,
        "get" => Command::Keyed(ShardOp::Get(rest.next().unwrap_or_default())),
        "incr" => Command::Keyed(ShardOp::Incr(rest.next().unwrap_or_default())),
        "ttl" => Command::Keyed(ShardOp::Ttl(rest.next().unwrap_or_default())),
        "del" => Command::Del(rest.collect()),
        "exists" => Command::Exists(rest.collect()),
        "mget" => Command::MGet(rest.collect()),
        "mset" => {
            let flat: Vec<Vec<u8>> = rest.collect();
            if flat.len() % 2 != 0 {
                return wrong_arity(&name);
            }
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            let mut items = flat.into_iter();
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                pairs.push((key, value));
            }
            Command::MSet(pairs)
        }
        "dbsize" => Command::DbSize,
        "flushall" => {
            let options: Vec<Vec<u8>> = rest.collect();
            match options.as_slice() {
                [] => Command::FlushAll,
                [mode]
                    if mode.eq_ignore_ascii_case(b"async")
                        || mode.eq_ignore_ascii_case(b"sync") =>
                {
                    Command::FlushAll
                }
                _ => syntax_error(),
            }
        }
        "expire" => {
            let key = rest.next().unwrap_or_default();
            let seconds = rest.next().unwrap_or_default();
            if let Some(option) = rest.next() {
                return Command::Reply(Reply::err(format_args!(
                    "Unsupported option {}",
                    String::from_utf8_lossy(&option)
                )));
            }
            match parse_i64(&seconds) {
                Some(seconds) => Command::Keyed(ShardOp::Expire(key, seconds)),
                None => Command::Reply(Reply::err(NOT_AN_INTEGER)),
            }
        }
        "set" => {
            let key = rest.next().unwrap_or_default();
            let value = rest.next().unwrap_or_default();
            parse_set(key, value, rest.collect())
        }
        // Every name the arity table knows is handled above.
        _ => syntax_error(),
    }
}

/// SET's options: `NX | XX`, `GET`, `EX s | PX ms | KEEPTTL`, any order,
/// each once (redis 7's `parseExtendedStringArgumentsOrReply`).
fn parse_set(key: Vec<u8>, value: Vec<u8>, options: Vec<Vec<u8>>) -> Command {
    let mut condition = SetCondition::Always;
    let mut expiry = SetExpiry::Clear;
    let mut keep_ttl = false;
    let mut get = false;
    let mut unit_ms: Option<(Vec<u8>, i64)> = None;
    let mut i = 0;
    while i < options.len() {
        let option = options[i].to_ascii_lowercase();
        let next = options.get(i + 1);
        match option.as_slice() {
            b"nx" if condition != SetCondition::IfExists => condition = SetCondition::IfMissing,
            b"xx" if condition != SetCondition::IfMissing => condition = SetCondition::IfExists,
            b"get" => get = true,
            b"keepttl" if unit_ms.is_none() => keep_ttl = true,
            b"ex" | b"px" if !keep_ttl && unit_ms.is_none() && next.is_some() => {
                let scale = if option == b"ex" { 1000 } else { 1 };
                unit_ms = next.map(|n| (n.clone(), scale));
                i += 1;
            }
            _ => return syntax_error(),
        }
        i += 1;
    }
    if keep_ttl {
        expiry = SetExpiry::Keep;
    }
    if let Some((text, scale)) = unit_ms {
        let Some(amount) = parse_i64(&text) else {
            return Command::Reply(Reply::err(NOT_AN_INTEGER));
        };
        match amount.checked_mul(scale) {
            Some(ms) if amount > 0 => expiry = SetExpiry::In(ms),
            _ => {
                return Command::Reply(Reply::err(crate::store::INVALID_SET_EXPIRE));
            }
        }
    }
    Command::Keyed(ShardOp::Set {
        key,
        value,
        condition,
        expiry,
        get,
    })
}

/// How the shards' answers make the reply.
#[derive(Debug)]
pub enum Merge {
    /// The one part's reply as is.
    Single,
    /// The sum of the parts' integers.
    Sum,
    /// `+OK` once every part is done.
    Ok,
    /// MGET: part `p`'s `j`-th value goes to `positions[p][j]` of `len`.
    Positions {
        /// Where each part's values go.
        positions: Vec<Vec<usize>>,
        /// The reply's length.
        len: usize,
    },
}

/// A command's parts, one per shard involved, and how to merge them.
#[derive(Debug)]
pub struct Plan {
    /// `(shard, op)`, at most one per shard.
    pub parts: Vec<(usize, ShardOp)>,
    /// How the answers merge.
    pub merge: Merge,
}

/// Groups `items` by the shard of their key, keeping their order within a
/// shard; also returns each group's original positions.
fn group<T>(
    items: Vec<T>,
    key: fn(&T) -> &[u8],
    shards: usize,
) -> Vec<(usize, Vec<T>, Vec<usize>)> {
    let mut groups: Vec<(usize, Vec<T>, Vec<usize>)> = Vec::new();
    for (position, item) in items.into_iter().enumerate() {
        let shard = shard_of(key(&item), shards);
        match groups.iter_mut().find(|(s, _, _)| *s == shard) {
            Some((_, group, positions)) => {
                group.push(item);
                positions.push(position);
            }
            None => groups.push((shard, vec![item], vec![position])),
        }
    }
    groups
}

/// A key as a slice (for [`group`]).
fn key_of(key: &Vec<u8>) -> &[u8] {
    key
}

/// A pair's key (for [`group`]).
fn pair_key(pair: &(Vec<u8>, Vec<u8>)) -> &[u8] {
    &pair.0
}

impl Plan {
    /// The plan of a keyed or multi-key `command` over `shards` shards;
    /// `None` for the commands that need no shard.
    pub fn new(command: Command, shards: usize) -> Option<Plan> {
        let (parts, merge) = match command {
            Command::Reply(_) | Command::Quit => return None,
            Command::Keyed(op) => {
                let key = match &op {
                    ShardOp::Get(key)
                    | ShardOp::Incr(key)
                    | ShardOp::Ttl(key)
                    | ShardOp::Expire(key, _)
                    | ShardOp::Set { key, .. } => key.as_slice(),
                    _ => b"",
                };
                (vec![(shard_of(key, shards), op)], Merge::Single)
            }
            Command::Del(keys) => (
                group(keys, key_of, shards)
                    .into_iter()
                    .map(|(s, keys, _)| (s, ShardOp::Del(keys)))
                    .collect(),
                Merge::Sum,
            ),
            Command::Exists(keys) => (
                group(keys, key_of, shards)
                    .into_iter()
                    .map(|(s, keys, _)| (s, ShardOp::Exists(keys)))
                    .collect(),
                Merge::Sum,
            ),
            Command::MSet(pairs) => (
                group(pairs, pair_key, shards)
                    .into_iter()
                    .map(|(s, pairs, _)| (s, ShardOp::MSet(pairs)))
                    .collect(),
                Merge::Ok,
            ),
            Command::MGet(keys) => {
                let len = keys.len();
                let mut positions = Vec::new();
                let mut parts = Vec::new();
                for (s, keys, at) in group(keys, key_of, shards) {
                    parts.push((s, ShardOp::MGet(keys)));
                    positions.push(at);
                }
                (parts, Merge::Positions { positions, len })
            }
            Command::DbSize => (
                (0..shards).map(|s| (s, ShardOp::DbSize)).collect(),
                Merge::Sum,
            ),
            Command::FlushAll => (
                (0..shards).map(|s| (s, ShardOp::FlushAll)).collect(),
                Merge::Ok,
            ),
        };
        Some(Plan { parts, merge })
    }

    /// The reply from the parts' answers, in the order of [`Plan::parts`].
    pub fn merge(merge: Merge, answers: Vec<ShardReply>) -> Reply {
        if let Some(ShardReply::Error(text)) =
            answers.iter().find(|a| matches!(a, ShardReply::Error(_)))
        {
            return Reply::err(text);
        }
        match merge {
            Merge::Single => match answers.into_iter().next() {
                Some(answer) => to_reply(answer),
                None => Reply::err("no shard answered"),
            },
            Merge::Sum => Reply::Integer(
                answers
                    .iter()
                    .map(|a| match a {
                        ShardReply::Integer(n) => *n,
                        _ => 0,
                    })
                    .sum(),
            ),
            Merge::Ok => Reply::OK,
            Merge::Positions { positions, len } => {
                let mut out = vec![Reply::Bulk(None); len];
                for (answer, at) in answers.into_iter().zip(positions) {
                    if let ShardReply::Values(values) = answer {
                        for (value, position) in values.into_iter().zip(at) {
                            out[position] = Reply::Bulk(value);
                        }
                    }
                }
                Reply::Array(out)
            }
        }
    }
}

/// One shard's answer to a single-key command as its reply.
fn to_reply(answer: ShardReply) -> Reply {
    match answer {
        ShardReply::Ok => Reply::OK,
        ShardReply::Integer(n) => Reply::Integer(n),
        ShardReply::Value(value) => Reply::Bulk(value),
        ShardReply::NotSet => Reply::Bulk(None),
        ShardReply::Values(values) => Reply::Array(values.into_iter().map(Reply::Bulk).collect()),
        ShardReply::Error(text) => Reply::err(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Runs a command line on `stores` (one per shard) the way the server
    /// does: plan, run each part on its shard, merge.
    fn run(stores: &mut [Store], now: i64, line: &str) -> Reply {
        let args = crate::resp::split_args(line.as_bytes()).unwrap();
        match parse(args) {
            Command::Reply(reply) => reply,
            Command::Quit => Reply::OK,
            command => {
                let plan = Plan::new(command, stores.len()).unwrap();
                let answers = plan
                    .parts
                    .into_iter()
                    .map(|(shard, op)| stores[shard].apply(op, now))
                    .collect();
                Plan::merge(plan.merge, answers)
            }
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    fn err(s: &str) -> Reply {
        Reply::Error(format!("ERR {s}"))
    }

    #[test]
    fn ping_echo_quit() {
        let mut st = [Store::new()];
        assert_eq!(run(&mut st, 0, "PING"), Reply::Simple("PONG"));
        assert_eq!(run(&mut st, 0, "ping hi"), bulk("hi"));
        assert_eq!(
            run(&mut st, 0, "ping a b"),
            err("wrong number of arguments for 'ping' command")
        );
        assert_eq!(run(&mut st, 0, "ECHO \"a b\""), bulk("a b"));
        assert_eq!(
            run(&mut st, 0, "echo"),
            err("wrong number of arguments for 'echo' command")
        );
        assert_eq!(parse(vec![b"QUIT".to_vec()]), Command::Quit);
    }

    #[test]
    fn set_options_and_errors_follow_redis() {
        let mut st = [Store::new()];
        assert_eq!(run(&mut st, 0, "SET k v"), Reply::OK);
        assert_eq!(run(&mut st, 0, "get k"), bulk("v"));
        assert_eq!(run(&mut st, 0, "set k w nx"), Reply::Bulk(None));
        assert_eq!(run(&mut st, 0, "set k w XX px 1500"), Reply::OK);
        assert_eq!(run(&mut st, 0, "ttl k"), Reply::Integer(2));
        assert_eq!(run(&mut st, 0, "set k w2 keepttl"), Reply::OK);
        assert_eq!(run(&mut st, 0, "ttl k"), Reply::Integer(2));
        assert_eq!(run(&mut st, 0, "set k w3 ex 10 get"), bulk("w2"));
        assert_eq!(run(&mut st, 0, "ttl k"), Reply::Integer(10));
        assert_eq!(run(&mut st, 10_000, "get k"), Reply::Bulk(None));
        for bad in [
            "set k v nx xx",
            "set k v xx nx",
            "set k v ex 1 px 1",
            "set k v ex 1 ex 1",
            "set k v ex",
            "set k v keepttl ex 1",
            "set k v ex 1 keepttl",
            "set k v foo",
        ] {
            assert_eq!(run(&mut st, 0, bad), err("syntax error"), "{bad}");
        }
        for bad in [
            "set k v ex 0",
            "set k v px -1",
            "set k v ex 9223372036854775807",
        ] {
            assert_eq!(
                run(&mut st, 0, bad),
                err("invalid expire time in 'set' command"),
                "{bad}"
            );
        }
        assert_eq!(run(&mut st, 0, "set k v ex 1.5"), err(NOT_AN_INTEGER));
        assert_eq!(
            run(&mut st, 0, "set k"),
            err("wrong number of arguments for 'set' command")
        );
    }

    #[test]
    fn counters_and_expiry_commands() {
        let mut st = [Store::new()];
        assert_eq!(run(&mut st, 0, "incr n"), Reply::Integer(1));
        assert_eq!(run(&mut st, 0, "set s abc"), Reply::OK);
        assert_eq!(run(&mut st, 0, "incr s"), err(NOT_AN_INTEGER));
        assert_eq!(run(&mut st, 0, "set m 9223372036854775807"), Reply::OK);
        assert_eq!(
            run(&mut st, 0, "incr m"),
            err("increment or decrement would overflow")
        );
        assert_eq!(
            run(&mut st, 0, "incr"),
            err("wrong number of arguments for 'incr' command")
        );
        assert_eq!(run(&mut st, 0, "expire n 5"), Reply::Integer(1));
        assert_eq!(run(&mut st, 0, "expire nope 5"), Reply::Integer(0));
        assert_eq!(run(&mut st, 0, "expire n x"), err(NOT_AN_INTEGER));
        assert_eq!(
            run(&mut st, 0, "expire n 5 foo"),
            err("Unsupported option foo")
        );
        assert_eq!(
            run(&mut st, 0, "expire n 9223372036854775807"),
            err("invalid expire time in 'expire' command")
        );
        assert_eq!(run(&mut st, 1000, "ttl n"), Reply::Integer(4));
        assert_eq!(run(&mut st, 0, "ttl s"), Reply::Integer(-1));
        assert_eq!(run(&mut st, 0, "ttl nope"), Reply::Integer(-2));
        assert_eq!(run(&mut st, 5000, "ttl n"), Reply::Integer(-2));
    }

    #[test]
    fn unknown_commands_list_their_first_args() {
        let mut st = [Store::new()];
        assert_eq!(
            run(&mut st, 0, "foo a b"),
            err("unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        assert_eq!(
            run(&mut st, 0, "FOO"),
            err("unknown command 'FOO', with args beginning with: ")
        );
        let long = "x".repeat(200);
        let Reply::Error(text) = run(&mut st, 0, &format!("foo {long} y")) else {
            panic!("not an error");
        };
        assert!(text.ends_with(&format!("'{}' ", "x".repeat(128))), "{text}");
    }

    use proptest::prelude::*;

    /// A random command line over a few keys (so that they collide).
    fn line() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec!["a", "b", "c", "foo", "bar", "{t}1", "{t}2", "n"]);
        let keys = prop::collection::vec(key.clone(), 1..6);
        prop_oneof![
            (key.clone(), 0..100i32).prop_map(|(k, v)| format!("set {k} {v}")),
            (key.clone(), 1..5i32).prop_map(|(k, s)| format!("set {k} x ex {s}")),
            key.clone().prop_map(|k| format!("get {k}")),
            key.clone().prop_map(|k| format!("incr {k}")),
            key.clone().prop_map(|k| format!("ttl {k}")),
            (key.clone(), -1..5i32).prop_map(|(k, s)| format!("expire {k} {s}")),
            keys.clone().prop_map(|ks| format!("del {}", ks.join(" "))),
            keys.clone()
                .prop_map(|ks| format!("exists {}", ks.join(" "))),
            keys.clone().prop_map(|ks| format!("mget {}", ks.join(" "))),
            keys.prop_map(|ks| format!(
                "mset {}",
                ks.iter()
                    .map(|k| format!("{k} 7"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            Just("dbsize".to_string()),
            Just("flushall".to_string()),
        ]
    }

    proptest! {
        /// Split over 1, 2 or 5 shards, every command answers as on one:
        /// the per-shard split and the merge are invisible to clients.
        #[test]
        fn sharding_is_invisible(
            lines in prop::collection::vec((line(), 0..1500i64), 1..60),
        ) {
            let mut one = [Store::new()];
            let mut two = [Store::new(), Store::new()];
            let mut five: Vec<Store> = (0..5).map(|_| Store::new()).collect();
            let mut now = 0;
            for (line, step) in lines {
                now += step;
                let want = run(&mut one, now, &line);
                prop_assert_eq!(&run(&mut two, now, &line), &want, "{}", line);
                prop_assert_eq!(&run(&mut five, now, &line), &want, "{}", line);
            }
        }
    }

    #[test]
    fn multi_key_commands_split_and_merge_in_key_order() {
        // Two shards: "foo" is on shard 0, "bar" on 1 (see store's tests).
        let mut st = [Store::new(), Store::new()];
        assert_eq!(run(&mut st, 0, "mset foo 1 bar 2 x 3"), Reply::OK);
        assert_eq!(
            run(&mut st, 0, "mset foo 1 bar"),
            err("wrong number of arguments for 'mset' command")
        );
        assert!(st[0].len() > 0 && st[1].len() > 0, "both shards hold keys");
        assert_eq!(
            run(&mut st, 0, "mget bar nope foo x bar"),
            Reply::Array(vec![
                bulk("2"),
                Reply::Bulk(None),
                bulk("1"),
                bulk("3"),
                bulk("2")
            ])
        );
        assert_eq!(
            run(&mut st, 0, "exists foo bar bar nope"),
            Reply::Integer(3)
        );
        assert_eq!(run(&mut st, 0, "dbsize"), Reply::Integer(3));
        assert_eq!(run(&mut st, 0, "del foo bar nope bar"), Reply::Integer(2));
        assert_eq!(run(&mut st, 0, "dbsize"), Reply::Integer(1));
        assert_eq!(run(&mut st, 0, "flushall"), Reply::OK);
        assert_eq!(run(&mut st, 0, "flushall sync"), Reply::OK);
        assert_eq!(run(&mut st, 0, "flushall now"), err("syntax error"));
        assert_eq!(run(&mut st, 0, "dbsize"), Reply::Integer(0));
        assert_eq!(
            run(&mut st, 0, "dbsize x"),
            err("wrong number of arguments for 'dbsize' command")
        );
        for name in ["del", "exists", "mget"] {
            assert_eq!(
                run(&mut st, 0, name),
                err(&format!("wrong number of arguments for '{name}' command"))
            );
        }
        // A plan has at most one part per shard.
        let plan = Plan::new(
            parse(crate::resp::split_args(b"mget foo bar foo bar").unwrap()),
            2,
        )
        .unwrap();
        assert_eq!(plan.parts.len(), 2);
    }
}
