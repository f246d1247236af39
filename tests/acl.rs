//! Digest-auth ACLs on members and set paths, against a real ZooKeeper.

mod common;

use std::time::Duration;

use common::*;
use serversets::{codec, Client, NodeAcl, RegisterOptions};
use zookeeper_client as zk;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_may_read_a_protected_member_but_not_delete_or_overwrite_it() {
    let server = zookeeper();
    let connect = server.connect_string();
    let owner = Client::builder(&connect)
        .digest("payments", "s3cret")
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let set = path("/discovery/prod/payments");
    let options = RegisterOptions::new()
        .acl(NodeAcl::creator_all_anyone_read())
        .path_acl(NodeAcl::protected_set());
    let registration = owner
        .register_with(&set, member(5001), options)
        .await
        .unwrap();
    let znode = registration.znode().unwrap();

    // Another identity: no auth at all, and a different digest.
    let anonymous = raw(&connect).await;
    let intruder = zk::Client::connector()
        .with_auth("digest", b"intruder:guess")
        .connect(&connect)
        .await
        .unwrap();
    for other in [&anonymous, &intruder] {
        let (data, _) = other.get_data(&znode).await.expect("members stay readable");
        assert_eq!(
            codec::decode(&data).unwrap().member.service_endpoint.port,
            5001
        );
        assert_eq!(other.delete(&znode, None).await, Err(zk::Error::NoAuth));
        assert_eq!(
            other.set_data(&znode, b"{}", None).await,
            Err(zk::Error::NoAuth)
        );
        assert_eq!(
            other.delete(set.as_str(), None).await,
            Err(zk::Error::NoAuth)
        );
    }
    // The member is still there, and watchers still see it.
    let watch = owner.watch(&set).await.unwrap();
    assert_eq!(ports(&watch.current()), [5001]);
    let (acl, _) = anonymous.get_acl(&znode).await.unwrap();
    assert_eq!(acl.len(), 2);

    // Others may still register their own members in the protected set.
    let created = raw_member(&anonymous, set.as_str(), &codec::encode(&member(5002))).await;
    wait_set(&watch, "another identity's member", |s| {
        ports(s) == [5001, 5002]
    })
    .await;
    assert!(created.starts_with(set.as_str()));

    // The owner can still deregister its own member.
    registration.close().await;
    wait_set(&watch, "owner deregistered", |s| ports(s) == [5002]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_that_refuses_us_is_a_clear_error() {
    let server = zookeeper();
    let connect = server.connect_string();
    let admin = raw(&connect).await;
    // A set path nobody but its (digest) creator may write to.
    let locked = zk::Client::connector()
        .with_auth("digest", b"admin:pw")
        .connect(&connect)
        .await
        .unwrap();
    locked
        .create(
            "/locked",
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
        )
        .await
        .unwrap();
    drop(admin);
    let client = client(&connect).await;
    let err = client
        .register(&path("/locked"), member(1))
        .await
        .expect_err("registration must be refused");
    assert!(err.to_string().contains("not authorized"), "{err}");
    assert!(err.to_string().contains("/locked"), "{err}");
    // An empty ACL is refused before any request.
    let err = client
        .register_with(
            &path("/x"),
            member(1),
            RegisterOptions::new().acl(NodeAcl::custom(vec![])),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, serversets::Error::InvalidConfig(_)), "{err}");
}
