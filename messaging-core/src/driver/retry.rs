//! Retrying: one back-off and one retry loop for every driver.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep, timeout_at, Instant};

use super::SendOptions;
use crate::error::{MessagingError, Result};

/// How one attempt failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt (connection lost, broker unreachable, leader moving, …).
    Retry(MessagingError),
    /// Another attempt would fail the same way (refused, rejected, bad credentials, …).
    Fatal(MessagingError),
}

/// Reconnection delays: `interval + step × (2ⁿ − 1)` for the n-th retry, capped at `max`, each
/// with up to half taken off at random, so that many clients do not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    interval: Duration,
    step: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A back-off starting at `interval`, growing by `step × (2ⁿ − 1)`, at most `max`.
    pub fn new(interval: Duration, step: Duration, max: Duration) -> Self {
        Self {
            interval,
            step,
            max: max.max(interval),
            attempt: 0,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let growth = 2f64.powi(self.attempt.min(30) as i32) - 1.0;
        self.attempt = self.attempt.saturating_add(1);
        let delay = (self.interval.as_secs_f64() + self.step.as_secs_f64() * growth)
            .min(self.max.as_secs_f64());
        Duration::from_secs_f64(delay * (0.5 + fastrand::f64() * 0.5))
    }

    /// Start over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Describes an operation for [`with_retry`]'s log lines and errors by writing it only when
/// one is written: `Describe::new(|f| write!(f, "sending to {address}"))` costs nothing on a
/// send that succeeds at once, where `format!` would build a string on every send.
///
/// ```
/// use messaging_core::driver::retry::Describe;
///
/// let address = "notifications.info";
/// let what = Describe::new(|f| write!(f, "sending to `{address}`"));
/// assert_eq!(what.to_string(), "sending to `notifications.info`");
/// ```
pub struct Describe<F>(F);

impl<F: Fn(&mut std::fmt::Formatter<'_>) -> std::fmt::Result> Describe<F> {
    /// Describe by calling `write`.
    pub fn new(write: F) -> Self {
        Self(write)
    }
}

impl<F: Fn(&mut std::fmt::Formatter<'_>) -> std::fmt::Result> Display for Describe<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (self.0)(f)
    }
}

/// Run `op` until it succeeds or fails with [`Failure::Fatal`], retrying [`Failure::Retry`]
/// as `options.retry` allows, with `backoff` between attempts, the whole bounded by
/// `options.timeout`. A back-off that would overrun the timeout is cut short: half the time
/// left is waited and the other half given to one last attempt. When it gives up, the last
/// error says after how many attempts and how long; an attempt cut by the timeout is a
/// [`MessagingError::ConnectionFailure`].
///
/// `what` names the operation in the log and errors; it is only formatted when one is written
/// (a send that succeeds at once formats nothing).
pub async fn with_retry<T, F, Fut>(
    what: &(impl Display + ?Sized),
    options: &SendOptions,
    backoff: Backoff,
    op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
{
    with_retry_paced(what, options, backoff, sleep, op).await
}

/// [`with_retry`], waiting between attempts with `pause(delay)` instead of sleeping `delay`:
/// a driver may end the wait early (e.g. as soon as a broker answers again after an outage).
pub async fn with_retry_paced<T, F, Fut, P, PFut>(
    what: &(impl Display + ?Sized),
    options: &SendOptions,
    mut backoff: Backoff,
    mut pause: P,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, Failure>>,
    P: FnMut(Duration) -> PFut,
    PFut: Future<Output = ()>,
{
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    let mut attempt = 0u32;
    let mut last_attempt = false;
    loop {
        let outcome = match deadline {
            Some(deadline) => timeout_at(deadline, op()).await.unwrap_or_else(|_| {
                Err(Failure::Retry(MessagingError::ConnectionFailure(format!(
                    "{what}: not done within {:?}",
                    options.timeout.unwrap_or_default()
                ))))
            }),
            None => op().await,
        };
        let error = match outcome {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Retry(error)) => error,
        };
        attempt += 1;
        let mut delay = backoff.next_delay();
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let out_of_time = last_attempt || left.is_some_and(|left| left.is_zero());
        if !options.retry.allows(attempt) || out_of_time {
            return Err(gave_up(error, attempt, started.elapsed()));
        }
        if let Some(left) = left.filter(|left| delay >= *left) {
            delay = left / 2;
            last_attempt = true;
        }
        tracing::warn!(%error, attempt, ?delay, "{what} failed; retrying");
        match deadline {
            Some(deadline) => drop(timeout_at(deadline, pause(delay)).await),
            None => pause(delay).await,
        }
    }
}

/// Add how many attempts were made, and how long it took, to a transient error.
fn gave_up(error: MessagingError, attempts: u32, elapsed: Duration) -> MessagingError {
    let why = format!("gave up after {attempts} attempt(s) in {elapsed:.1?}");
    match error {
        MessagingError::ConnectionFailure(reason) => {
            MessagingError::ConnectionFailure(format!("{reason} ({why})"))
        }
        MessagingError::DeliveryFailure(reason) => {
            MessagingError::DeliveryFailure(format!("{reason} ({why})"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Retry;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> Backoff {
        Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_millis(4),
        )
    }

    #[test]
    fn delays_grow_to_the_maximum_with_jitter() {
        let mut backoff = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(30),
        );
        let delays: Vec<f64> = (0..8).map(|_| backoff.next_delay().as_secs_f64()).collect();
        for (delay, full) in delays
            .iter()
            .zip([1.0, 3.0, 7.0, 15.0, 30.0, 30.0, 30.0, 30.0])
        {
            assert!(
                (full * 0.5..=full).contains(delay),
                "{delay} not in [{}, {full}]",
                full * 0.5
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn retries_as_the_policy_allows() {
        let calls = AtomicU32::new(0);
        let options = SendOptions {
            retry: Retry::Times(2),
            ..SendOptions::default()
        };
        let result: Result<()> = with_retry("test", &options, fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::Retry(MessagingError::ConnectionFailure(
                "down".into(),
            )))
        })
        .await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "one attempt and two retries"
        );
        let message = result.unwrap_err().to_string();
        assert!(message.contains("gave up after 3 attempt(s)"), "{message}");
    }

    #[tokio::test]
    async fn fatal_failures_are_not_retried_and_success_returns() {
        let calls = AtomicU32::new(0);
        let options = SendOptions::default();
        let result: Result<()> = with_retry("test", &options, fast(), || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::Fatal(MessagingError::AuthenticationFailure(
                "no".into(),
            )))
        })
        .await;
        assert!(matches!(
            result,
            Err(MessagingError::AuthenticationFailure(_))
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let calls = AtomicU32::new(0);
        let value = with_retry("test", &options, fast(), || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(Failure::Retry(MessagingError::ConnectionFailure(
                    "blip".into(),
                ))),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(value.unwrap(), 7);
    }

    /// A back-off longer than the time left does not end the retries early: one last
    /// attempt is made halfway through what is left.
    #[tokio::test]
    async fn a_last_attempt_is_made_before_the_deadline() {
        let started = Instant::now();
        let attempts = std::sync::Mutex::new(Vec::new());
        let options = SendOptions {
            timeout: Some(Duration::from_secs(1)),
            ..SendOptions::default()
        };
        let slow = Backoff::new(
            Duration::from_secs(10),
            Duration::ZERO,
            Duration::from_secs(10),
        );
        let result: Result<()> = with_retry("test", &options, slow, || async {
            attempts.lock().unwrap().push(started.elapsed());
            Err(Failure::Retry(MessagingError::ConnectionFailure(
                "down".into(),
            )))
        })
        .await;
        let attempts = attempts.into_inner().unwrap();
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        let last = attempts[1];
        assert!(
            (Duration::from_millis(450)..Duration::from_secs(1)).contains(&last),
            "the last attempt, halfway through what was left, came at {last:?}"
        );
        let message = result.unwrap_err().to_string();
        assert!(message.contains("gave up after 2 attempt(s)"), "{message}");
    }

    #[tokio::test]
    async fn the_timeout_bounds_everything() {
        let options = SendOptions {
            timeout: Some(Duration::from_millis(50)),
            ..SendOptions::default()
        };
        let started = Instant::now();
        let result: Result<()> = with_retry("stuck", &options, fast(), || async {
            sleep(Duration::from_secs(10)).await;
            Ok(())
        })
        .await;
        assert!(
            matches!(result, Err(MessagingError::ConnectionFailure(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
