//! The Bedrock objects port over a real S3 API (AWS or any S3-compatible server such as moto),
//! through `aws-sdk-s3` with path-style addressing.
//!
//! The client is built on first use: with the credentials given, or else from the usual AWS
//! environment chain (environment variables, profile, …), falling back to static dummy
//! credentials (`sandbox`/`sandbox`) when the chain finds none, which is what local
//! S3-compatible servers accept. The region is the one given, else the chain's, else
//! `us-east-1`.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use tokio::sync::OnceCell;

use super::objects::{Listed, ObjectUri, Objects, ObjectsError, Reader};
use crate::BedrockS3;

/// How long the credential chain may look before the dummy credentials are used.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// An S3 API as the bucket.
pub(crate) struct S3 {
    settings: BedrockS3,
    client: OnceCell<Client>,
}

impl S3 {
    pub(crate) fn new(settings: BedrockS3) -> Self {
        S3 {
            settings,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &Client {
        self.client.get_or_init(|| build(&self.settings)).await
    }
}

async fn build(settings: &BedrockS3) -> Client {
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&settings.endpoint)
        .force_path_style(true);
    let dummy = || Credentials::new("sandbox", "sandbox", None, None, "batchdrop-sandbox");
    let mut region = settings.region.clone().map(Region::new);
    match &settings.credentials {
        Some((key, secret)) => {
            builder = builder.credentials_provider(Credentials::new(
                key,
                secret,
                None,
                None,
                "batchdrop-sandbox",
            ));
        }
        None => {
            let chain = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            if region.is_none() {
                region = chain.region().cloned();
            }
            let found = match chain.credentials_provider() {
                Some(provider) => {
                    use aws_sdk_s3::config::ProvideCredentials;
                    matches!(
                        tokio::time::timeout(CHAIN_TIMEOUT, provider.provide_credentials()).await,
                        Ok(Ok(_))
                    )
                    .then_some(provider)
                }
                None => None,
            };
            builder = match found {
                Some(provider) => builder.credentials_provider(provider),
                None => {
                    tracing::info!(
                        "no AWS credentials found: the sandbox signs S3 calls with dummy ones"
                    );
                    builder.credentials_provider(dummy())
                }
            };
        }
    }
    builder = builder.region(region.unwrap_or_else(|| Region::new("us-east-1")));
    Client::from_conf(builder.build())
}

fn remote(uri: &ObjectUri, error: impl std::error::Error) -> ObjectsError {
    ObjectsError::Remote {
        uri: uri.clone(),
        reason: DisplayErrorContext(error).to_string(),
    }
}

#[async_trait]
impl Objects for S3 {
    async fn get(&self, uri: &ObjectUri) -> Result<Reader, ObjectsError> {
        let answer = self
            .client()
            .await
            .get_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .send()
            .await;
        match answer {
            Ok(object) => Ok(Box::new(object.body.into_async_read())),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|service| service.is_no_such_key()) =>
            {
                Err(ObjectsError::NotFound { uri: uri.clone() })
            }
            Err(error) => Err(remote(uri, error)),
        }
    }

    async fn put_file(&self, uri: &ObjectUri, file: &Path) -> Result<(), ObjectsError> {
        let body = ByteStream::from_path(file)
            .await
            .map_err(|error| remote(uri, error))?;
        self.client()
            .await
            .put_object()
            .bucket(&uri.bucket)
            .key(&uri.key)
            .body(body)
            .send()
            .await
            .map_err(|error| remote(uri, error))?;
        Ok(())
    }

    async fn list(&self, prefix: &ObjectUri) -> Result<Vec<Listed>, ObjectsError> {
        let client = self.client().await;
        let mut pages = client
            .list_objects_v2()
            .bucket(&prefix.bucket)
            .prefix(&prefix.key)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| remote(prefix, error))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push(Listed {
                        uri: ObjectUri {
                            bucket: prefix.bucket.clone(),
                            key: key.to_owned(),
                        },
                        bytes: object.size().map_or(0, |size| size.max(0) as u64),
                    });
                }
            }
        }
        found.sort_by(|a, b| a.uri.key.cmp(&b.uri.key));
        Ok(found)
    }
}
