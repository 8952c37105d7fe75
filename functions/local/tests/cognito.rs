//! The local server on a Cognito user pool (in moto_server, `LABELING_MOTO_ENDPOINT`): the
//! pool's ID and access tokens pass with the roles their groups give, a tampered token does
//! not, the users file's tokens still do, and the web app is told to sign in with the pool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use labeling_local::cognito::CognitoSettings;
use labeling_local::{Local, Options};
use serde_json::{Value, json};

fn moto() -> String {
    std::env::var("LABELING_MOTO_ENDPOINT").expect(
        "LABELING_MOTO_ENDPOINT is not set: this test needs the moto emulator \
         (eval \"$(./infra/python-env.sh)\"; eval \"$(./infra/moto.sh start)\")",
    )
}

/// One Cognito action on moto, as an SDK sends it (moto does not check the signature).
async fn cognito(http: &reqwest::Client, action: &str, body: Value) -> Value {
    let response = http
        .post(format!("{}/", moto()))
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AWSCognitoIdentityProviderService.{action}"),
        )
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/cognito-idp/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{action}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn me(http: &reqwest::Client, base: &str, token: &str) -> (u16, Value) {
    let response = http
        .get(format!("{base}/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pools_tokens_pass_with_their_groups_roles_and_forgeries_do_not() {
    let http = reqwest::Client::new();
    let pool = cognito(
        &http,
        "CreateUserPool",
        json!({"PoolName": format!("local-{}", std::process::id())}),
    )
    .await["UserPool"]["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = cognito(
        &http,
        "CreateUserPoolClient",
        json!({"UserPoolId": pool, "ClientName": "web",
               "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}),
    )
    .await["UserPoolClient"]["ClientId"]
        .as_str()
        .unwrap()
        .to_owned();
    for (user, group) in [("ada", "labeling-admins"), ("leo", "labelers")] {
        cognito(
            &http,
            "CreateGroup",
            json!({"UserPoolId": pool, "GroupName": group}),
        )
        .await;
        cognito(
            &http,
            "AdminCreateUser",
            json!({"UserPoolId": pool, "Username": user}),
        )
        .await;
        cognito(
            &http,
            "AdminSetUserPassword",
            json!({"UserPoolId": pool, "Username": user, "Password": "Long-password-1", "Permanent": true}),
        )
        .await;
        cognito(
            &http,
            "AdminAddUserToGroup",
            json!({"UserPoolId": pool, "Username": user, "GroupName": group}),
        )
        .await;
    }
    let tokens = |user: &'static str| {
        let (http, client) = (http.clone(), client.clone());
        async move {
            cognito(
                &http,
                "InitiateAuth",
                json!({"AuthFlow": "USER_PASSWORD_AUTH", "ClientId": client,
                       "AuthParameters": {"USERNAME": user, "PASSWORD": "Long-password-1"}}),
            )
            .await["AuthenticationResult"]
                .clone()
        }
    };

    let dir = std::env::temp_dir().join(format!("labeling-cognito-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = Options::new(&dir);
    options.admin_token = Some("file-admin-token".to_owned());
    options.cognito = Some(CognitoSettings::new(&pool, &client, Some(&moto())).unwrap());
    let local = Local::open(options).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(local.serve(listener, async {
        let _ = stopped.await;
    }));

    let ada = tokens("ada").await;
    let id_token = ada["IdToken"].as_str().unwrap();
    assert_eq!(
        me(&http, &base, id_token).await,
        (200, json!({"user": "ada", "role": "admin"}))
    );
    assert_eq!(
        me(&http, &base, ada["AccessToken"].as_str().unwrap())
            .await
            .0,
        200,
        "access tokens name the client in client_id"
    );
    let leo = tokens("leo").await;
    assert_eq!(
        me(&http, &base, leo["IdToken"].as_str().unwrap()).await,
        (200, json!({"user": "leo", "role": "labeler"}))
    );
    // The labeler's token with the admins' group pasted in: the signature no longer holds.
    let parts: Vec<&str> = leo["IdToken"].as_str().unwrap().split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["cognito:groups"] = json!(["labeling-admins"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(me(&http, &base, &forged).await.0, 401);
    assert_eq!(me(&http, &base, "a.b.c").await.0, 401);
    // The users file's tokens keep working beside the pool's.
    assert_eq!(
        me(&http, &base, "file-admin-token").await,
        (200, json!({"user": "admin", "role": "admin"}))
    );
    // A pool user is added to a project by name, unseen by this server.
    let created = http
        .post(format!("{base}/projects"))
        .bearer_auth(id_token)
        .json(
            &json!({"name": "pool", "task_type": "image_classification_multiclass",
                      "labels": ["a", "b"], "source": "s3://nowhere/**"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let project: Value = created.json().await.unwrap();
    let member = http
        .post(format!(
            "{base}/projects/{}/members",
            project["id"].as_str().unwrap()
        ))
        .bearer_auth(id_token)
        .json(&json!({"user": "leo"}))
        .send()
        .await
        .unwrap();
    assert!(
        member.status().is_success(),
        "{}",
        member.text().await.unwrap()
    );

    // The web app is told to sign in with the pool, and its page may call the emulator.
    let config: Value = http
        .get(format!("{base}/app/config.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config,
        json!({"sign_in": "cognito", "endpoint": format!("{}/", moto()), "client_id": client})
    );
    let page = http.get(format!("{base}/")).send().await.unwrap();
    let policy = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        policy.contains(&format!("connect-src 'self' https: {};", moto())),
        "{policy}"
    );

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
