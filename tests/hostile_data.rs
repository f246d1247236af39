//! Hostile and odd data: the parsers never panic on arbitrary input, and a
//! watch keeps serving valid members around huge, numerous or odd ones.

mod common;

use common::*;
use proptest::prelude::*;
use serversets::WatchEngine;
use serversets::{codec, vector, Destination, Endpoint, Member, ServerSetPath};
use zookeeper_client as zk;

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn member_codec_never_panics_on_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode(&data);
    }

    #[test]
    fn member_codec_never_panics_on_json_like_text(text in r#"[{}\[\]":,0-9a-zA-Z .\-\\]{0,200}"#) {
        let _ = codec::decode(text.as_bytes());
    }

    #[test]
    fn member_codec_never_panics_on_odd_json(
        host in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(|n| n.into()), ".{0,20}".prop_map(serde_json::Value::from)],
        port in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(|n| n.into()), any::<f64>().prop_map(|f| serde_json::json!(f)), ".{0,5}".prop_map(serde_json::Value::from)],
        shard in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(|n| n.into()), ".{0,5}".prop_map(serde_json::Value::from)],
        status in ".{0,10}",
    ) {
        let json = serde_json::json!({
            "serviceEndpoint": {"host": host, "port": port},
            "additionalEndpoints": {"x": {"host": host, "port": port}},
            "status": status,
            "shard": shard,
            "metadata": {"k": port},
        });
        let _ = codec::decode(json.to_string().as_bytes());
    }

    #[test]
    fn members_round_trip(
        host in "[a-z0-9.:-]{1,40}",
        port in any::<u16>(),
        shard in proptest::option::of(any::<i32>()),
        extra in proptest::collection::btree_map("[a-z]{1,8}", any::<u16>(), 0..4),
        metadata in proptest::collection::btree_map(".{0,8}", ".{0,16}", 0..4),
    ) {
        let mut member = Member::new(Endpoint::new(host.clone(), port));
        member.shard = shard;
        for (name, p) in extra {
            member = member.with_additional(name, Endpoint::new(host.clone(), p));
        }
        member.metadata = metadata;
        let decoded = codec::decode(&codec::encode(&member)).expect("our own output decodes");
        prop_assert_eq!(decoded.member, member);
        prop_assert!(decoded.warnings.is_empty());
    }

    #[test]
    fn vector_parser_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = vector::parse(&data);
    }

    #[test]
    fn vector_parser_never_panics_on_odd_descriptors(select in ".{0,40}", weight in any::<f64>()) {
        let json = format!(r#"{{"vector":[{{"select":{},"weight":{}}}]}}"#,
            serde_json::Value::from(select), serde_json::json!(weight));
        if let Ok((v, _)) = vector::parse(json.as_bytes()) {
            for d in v.descriptors {
                prop_assert!(d.weight.is_finite() && d.weight >= 0.0);
            }
        }
    }

    #[test]
    fn text_parsers_never_panic(s in ".{0,80}") {
        let _ = s.parse::<Endpoint>();
        let _ = s.parse::<Destination>();
        let _ = ServerSetPath::new(s.clone());
        let _ = s.parse::<serversets::Environment>();
    }
}

both_engines!(huge_numerous_and_odd_members_around_valid_ones);
async fn huge_numerous_and_odd_members_around_valid_ones(engine: WatchEngine) {
    let server = zookeeper();
    let connect = server.connect_string();
    let client = client_on(&connect, engine).await;
    let other = raw(&connect).await;
    let dir = "/odd/set";
    mkdir(&other, dir).await;
    let set = path(dir);

    // A 1 MB member (valid JSON padded with a huge unknown field), and one
    // just over a megabyte of garbage would be refused by ZooKeeper itself.
    let padding = "x".repeat(1_000_000);
    let huge = format!(
        r#"{{"serviceEndpoint":{{"host":"10.9.9.9","port":1}},"additionalEndpoints":{{}},"status":"ALIVE","pad":"{padding}"}}"#
    );
    raw_member(&other, dir, huge.as_bytes()).await;
    // Odd names: non-member children with odd characters, and member_
    // names without a sequence.
    for name in [
        "member_",
        "member_abc",
        "x y z",
        "ü-ñ-日本",
        "member_0000000001-extra",
    ] {
        other
            .create(
                &format!("{dir}/{name}"),
                &codec::encode(&member(7)),
                &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
            )
            .await
            .unwrap();
    }
    // 10,000 children, valid and invalid mixed.
    for chunk in (0..10_000u32).collect::<Vec<_>>().chunks(1000) {
        let writes = chunk.iter().map(|&i| {
            let data = if i % 10 == 0 {
                b"{broken".to_vec()
            } else {
                codec::encode(&member(10_000 + (i % 50_000) as u16))
            };
            let other = other.clone();
            async move { raw_member(&other, dir, &data).await }
        });
        futures::future::join_all(writes).await;
    }
    let watch = client.watch(&set).await.unwrap();
    let snapshot = watch.current();
    // 9,000 valid sequential members + the huge one + the three `member_`
    // names ZooKeeper accepts as children (served: Finagle only needs the prefix).
    assert_eq!(snapshot.len(), 9_000 + 1 + 3, "{}", snapshot.len());
    assert!(snapshot.iter().any(|e| e.endpoint.host == "10.9.9.9"));

    // A member deleted between list and read is simply absent; the set
    // follows deletes and re-creations of the path itself.
    let victim = snapshot.entries()[5].name.clone();
    other
        .delete(&format!("{dir}/{victim}"), None)
        .await
        .unwrap();
    wait_set(&watch, "victim gone", |s| s.get(&victim).is_none()).await;
}
