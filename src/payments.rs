//! Order operations that combine the store and the WeChat Pay client: placing an order
//! with its prepay id, the `wx.requestPayment` parameters, asking WeChat Pay about an
//! order and applying what it says, closing, refunding, and the maintenance pass. Handlers
//! (`api/pay/`) and the maintenance thread share them.
//!
//! Each store call is its own transaction and no WeChat Pay call happens inside one: the
//! writer is never held while WeChat Pay is slow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::pay::PayConfig;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::pay::client::FetchError;
use crate::pay::{
    CertificatesError, JsapiOrder, PayClient, PayError, PaymentParams, RefundRequest, Transaction, WeChatRefund,
};
use crate::store::Store;
use crate::store::{Applied, NewRefund, Order, OrderState, Payment, StoreError};
use crate::store::{Refund, RefundApplied, RefundCreated, RefundResult, RefundState};

/// A failed WeChat Pay call as the metrics count it: WeChat Pay's code, or what went wrong.
fn call_code(e: &PayError) -> String {
    match e {
        PayError::Refused { code, .. } => code.clone(),
        PayError::Unverified => "UNVERIFIED".into(),
        PayError::Timeout => "TIMEOUT".into(),
        PayError::Unreachable => "UNREACHABLE".into(),
        PayError::Unreadable => "UNREADABLE".into(),
        PayError::Invalid(_) => "INVALID".into(),
    }
}

/// A prepay id lives 2 hours at WeChat Pay; one this old is renewed (a minute early, so
/// that the mini-program still has time to use it).
pub const PREPAY_RENEW_AFTER: i64 = 7200 - 60;
/// `?sync=true` asks WeChat Pay about one order at most this often.
pub const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Orders remembered for [`SYNC_EVERY`]; when all are recent, a sync answers from the
/// database instead.
const SYNC_MEMORY: usize = 10_000;
/// The maintenance pass handles at most this many orders of each kind.
pub const PASS_LIMIT: usize = 50;

/// Everything payments need; present only with `[pay]`.
pub struct Payments {
    pub config: PayConfig,
    pub client: PayClient,
    sync_gate: SyncGate,
    metrics: Metrics,
}

impl Payments {
    pub fn new(config: &Config, metrics: Metrics) -> Option<Payments> {
        let pay = config.pay.clone()?;
        let client = PayClient::new(
            &pay.api_base,
            Duration::from_millis(config.wechat.timeout_ms),
            config.wechat.retries,
            pay.merchant.clone(),
            pay.verifier.clone(),
        );
        Some(Payments { config: pay, client, sync_gate: SyncGate::default(), metrics })
    }

    /// Counts a WeChat Pay call by its answer: `OK`, WeChat Pay's code, or what went wrong.
    fn counted<T>(&self, api: &'static str, r: Result<T, PayError>) -> Result<T, PayError> {
        let code = match &r {
            Ok(_) => "OK".to_string(),
            Err(e) => call_code(e),
        };
        self.metrics.pay_call(api, code);
        r
    }

    pub fn query(&self, out_trade_no: &str) -> Result<Transaction, PayError> {
        self.counted("query", self.client.query(out_trade_no))
    }

    /// Fetches the platform certificates and trusts exactly those valid now; on failure
    /// the ones already trusted stay (and are logged about). How many are trusted.
    pub fn refresh_certificates(&self) -> Result<usize, FetchError> {
        let fetched = self.client.certificates(&self.config.apiv3_key);
        self.metrics.pay_call(
            "certificates",
            match &fetched {
                Ok(_) => "OK".into(),
                Err(FetchError::Pay(e)) => call_code(e),
                Err(FetchError::Certificates(CertificatesError::Decrypt)) => "DECRYPT_FAILED".into(),
                Err(FetchError::Certificates(CertificatesError::Invalid(_))) => "UNREADABLE".into(),
                Err(FetchError::UnverifiedRefusal { .. }) => "UNVERIFIED".into(),
            },
        );
        let certificates = fetched?;
        let serials: Vec<&str> = certificates.iter().map(|c| c.serial.as_str()).collect();
        log::info!("wechat pay: trusting platform certificate(s) {}", serials.join(", "));
        let n = certificates.len();
        self.config.verifier.set_certificates(certificates);
        Ok(n)
    }

    fn close_at_wechatpay(&self, out_trade_no: &str) -> Result<(), PayError> {
        self.counted("close", self.client.close(out_trade_no))
    }

    /// The appid of the app an order is for.
    fn appid_of<'a>(&self, config: &'a Config, order: &Order) -> Result<&'a str, ApiError> {
        config.app(&order.app).map(|a| a.appid.as_str()).ok_or_else(|| {
            log::error!("order {} is for app {:?}, which is no longer configured", order.out_trade_no, order.app);
            ApiError::OrderNotPayable("its app is no longer configured")
        })
    }

    /// Fresh `wx.requestPayment` parameters for an order that is still payable, asking
    /// WeChat Pay for a prepay id (with the order's own parameters) when it has none or
    /// when the one it has is too old.
    pub fn payment(&self, config: &Config, store: &Store, order: &Order, now: i64) -> Result<PaymentParams, ApiError> {
        if order.state != OrderState::Created {
            return Err(ApiError::OrderNotPayable("it is no longer waiting for payment"));
        }
        if order.expires_at <= now {
            return Err(ApiError::OrderNotPayable("it has expired"));
        }
        let appid = self.appid_of(config, order)?;
        let prepay_id = match (&order.prepay_id, order.prepay_at) {
            (Some(id), Some(at)) if now - at < PREPAY_RENEW_AFTER => id.clone(),
            _ => {
                let asked = JsapiOrder {
                    appid,
                    mchid: &self.config.mchid,
                    description: &order.description,
                    out_trade_no: &order.out_trade_no,
                    time_expire: order.expires_at,
                    attach: order.attach.as_deref(),
                    notify_url: &self.config.notify_url,
                    amount_total: order.amount,
                    payer_openid: &order.openid,
                };
                let id = self.counted("jsapi", self.client.jsapi(&asked))?;
                store.set_prepay(&order.out_trade_no, &id, now)?;
                id
            }
        };
        self.config.merchant.payment_params(appid, &prepay_id).map_err(|e| {
            log::error!("the payment parameters could not be signed: {e}");
            ApiError::Internal
        })
    }

    /// Whether a WeChat Pay transaction (from a verified notification or query) is about
    /// `order` and this merchant: mchid, an appid of ours that is the order's app's, and
    /// the amount. The refusal says which.
    pub fn check_transaction(&self, config: &Config, order: &Order, t: &Transaction) -> Result<(), String> {
        if t.mchid != self.config.mchid {
            return Err("its mchid is not this merchant's".into());
        }
        if !config.apps.iter().any(|a| a.appid == t.appid) {
            return Err("its appid is not one of this server's apps".into());
        }
        if config.app(&order.app).map(|a| a.appid.as_str()) != Some(t.appid.as_str()) {
            return Err("its appid is not the order's app's".into());
        }
        if t.amount_total != Some(order.amount) {
            return Err("its amount is not the order's amount".into());
        }
        Ok(())
    }

    /// Asks WeChat Pay about a `created` order and applies what it says (see
    /// [`Payments::ask_and_apply`]). Returns the order as the database then has it; when
    /// WeChat Pay cannot be asked, the order as it was (with the reason logged).
    pub fn sync(&self, config: &Config, store: &Store, order: Order, now: i64) -> Result<Order, ApiError> {
        if order.state != OrderState::Created {
            return Ok(order);
        }
        let no = order.out_trade_no.clone();
        match self.ask_and_apply(config, store, order.clone(), now) {
            Ok(synced) => {
                if let SyncOutcome::NotApplied(why) = &synced.outcome {
                    log::warn!("wechat pay: the query of order {no} was not applied: {why}");
                }
                Ok(synced.order)
            }
            Err(SyncError::Unasked(e)) => {
                log::warn!("wechat pay: order {no} could not be queried: {e}");
                Ok(order)
            }
            Err(SyncError::Vanished) => Ok(order),
            Err(SyncError::Store(e)) => Err(e.into()),
        }
    }

    /// The one place that asks WeChat Pay about an order and records its answer, exactly
    /// as a notification would be: a SUCCESS (or REFUND) with this merchant's mchid, the
    /// order's app's appid and the order's amount becomes `paid` (once, with its event);
    /// a CLOSED closes a `created` order here. `?sync=true`, the maintenance pass and
    /// `wxlogin orders sync` all come here.
    pub fn ask_and_apply(&self, config: &Config, store: &Store, order: Order, now: i64) -> Result<Synced, SyncError> {
        let no = order.out_trade_no.clone();
        let t = match self.query(&no) {
            Ok(t) => t,
            Err(PayError::Refused { code, .. }) if code == "ORDER_NOT_EXIST" => {
                return Ok(Synced {
                    order,
                    trade_state: None,
                    transaction_id: None,
                    outcome: SyncOutcome::NotAtWeChatPay,
                })
            }
            Err(e) => return Err(SyncError::Unasked(e)),
        };
        let before = order.state;
        let synced = |order: Order, outcome: SyncOutcome| Synced {
            order,
            trade_state: Some(t.trade_state.clone()),
            transaction_id: t.transaction_id.clone(),
            outcome,
        };
        if t.out_trade_no != no {
            return Ok(synced(order, SyncOutcome::NotApplied("its answer is about another order".into())));
        }
        match t.trade_state.as_str() {
            "SUCCESS" | "REFUND" => {
                if let Err(why) = self.check_transaction(config, &order, &t) {
                    return Ok(synced(order, SyncOutcome::NotApplied(why)));
                }
                let Some(applied) = self.record(store, &no, &t, now).map_err(SyncError::Store)? else {
                    return Ok(synced(order, SyncOutcome::NotApplied("it has no transaction id".into())));
                };
                Ok(match applied {
                    Applied::Paid(o) => synced(o, SyncOutcome::Changed),
                    Applied::AlreadyPaid(o) => synced(o, SyncOutcome::Unchanged),
                    Applied::AmountMismatch(o) => {
                        synced(o, SyncOutcome::NotApplied("its amount is not the order's amount".into()))
                    }
                    Applied::NotPayable(o) => {
                        let why = format!(
                            "the order is {} here (the user paid: refund them at 商户平台 or record it by hand)",
                            o.state.as_str()
                        );
                        synced(o, SyncOutcome::NotApplied(why))
                    }
                    Applied::Unknown => return Err(SyncError::Vanished),
                })
            }
            "CLOSED" => {
                let o = store.close_order(&no, now).map_err(SyncError::Store)?.ok_or(SyncError::Vanished)?;
                let outcome = if o.state == before { SyncOutcome::Unchanged } else { SyncOutcome::Changed };
                Ok(synced(o, outcome))
            }
            _ => Ok(synced(order, SyncOutcome::Unchanged)),
        }
    }

    /// Records a paid transaction (already checked), exactly once.
    pub fn apply(&self, store: &Store, out_trade_no: &str, t: &Transaction, now: i64) -> Result<Applied, ApiError> {
        self.record(store, out_trade_no, t, now)?.ok_or_else(|| ApiError::PayError {
            wechatpay_code: None,
            message: "WeChat Pay reported a payment without its transaction id or amount.".into(),
        })
    }

    /// [`Payments::apply`] and [`Payments::ask_and_apply`]'s one way to record a payment;
    /// `None` when WeChat Pay's transaction lacks its id or amount. Logs what an operator
    /// must act on.
    fn record(
        &self,
        store: &Store,
        out_trade_no: &str,
        t: &Transaction,
        now: i64,
    ) -> Result<Option<Applied>, StoreError> {
        let (Some(transaction_id), Some(amount_total)) = (t.transaction_id.as_deref(), t.amount_total) else {
            return Ok(None);
        };
        let p = Payment { out_trade_no, transaction_id, amount_total, paid_at: t.success_time.unwrap_or(now) };
        let applied = store.apply_payment(&p, now)?;
        match &applied {
            Applied::AlreadyPaid(o) if o.transaction_id.as_deref() != Some(transaction_id) => {
                log::warn!("wechat pay: order {out_trade_no} is paid by another transaction than the one just reported")
            }
            Applied::NotPayable(_) => log::warn!(
                "wechat pay: order {out_trade_no} was paid at WeChat Pay after it was closed here; refund it"
            ),
            _ => {}
        }
        Ok(Some(applied))
    }

    /// Whether `?sync=true` may ask WeChat Pay about this order now.
    pub fn may_sync(&self, out_trade_no: &str) -> bool {
        self.sync_gate.allow(out_trade_no, Instant::now())
    }

    /// Closes a `created` order at WeChat Pay, then here. A paid order (here, or at
    /// WeChat Pay before its notification came, which is then recorded) is
    /// [`ApiError::OrderPaid`]; a closed one is answered as it is.
    pub fn close(&self, config: &Config, store: &Store, order: Order, now: i64) -> Result<Order, ApiError> {
        match order.state {
            OrderState::Paid | OrderState::Refunded => return Err(ApiError::OrderPaid),
            OrderState::Closed => return Ok(order),
            OrderState::Created => {}
        }
        match self.close_at_wechatpay(&order.out_trade_no) {
            Ok(()) => {}
            // Never placed at WeChat Pay (its JSAPI call failed), or closed there already.
            Err(PayError::Refused { code, .. }) if code == "ORDER_NOT_EXIST" || code == "ORDER_CLOSED" => {}
            Err(PayError::Refused { code, .. }) if code == "ORDERPAID" || code == "ORDER_PAID" => {
                let synced = self.sync(config, store, order, now)?;
                log::warn!("wechat pay: order {} was paid before it could be closed", synced.out_trade_no);
                return Err(ApiError::OrderPaid);
            }
            Err(e) => return Err(e.into()),
        }
        match store.close_order(&order.out_trade_no, now)? {
            Some(o) if matches!(o.state, OrderState::Paid | OrderState::Refunded) => Err(ApiError::OrderPaid),
            Some(o) => Ok(o),
            None => Err(ApiError::NotFound),
        }
    }

    /// One bounded maintenance pass: asks WeChat Pay about orders due for a query, then
    /// closes expired ones at WeChat Pay and here, then follows refunds not final. Stops at the first failure to reach
    /// WeChat Pay (an outage delays the pass; the next one starts over), or when `stop`
    /// says so. Returns how many orders and refunds changed.
    pub fn maintenance_pass(&self, config: &Config, store: &Store, now: i64, stop: &dyn Fn() -> bool) -> usize {
        let mut changed = 0;
        match store.orders_due_for_query(now, PASS_LIMIT) {
            Ok(due) => {
                for order in due {
                    if stop() {
                        return changed;
                    }
                    match self.pass_query(config, store, order, now) {
                        Ok(true) => changed += 1,
                        Ok(false) => {}
                        Err(()) => return changed,
                    }
                }
            }
            Err(e) => log::warn!("maintenance: orders due for a query could not be read: {e}"),
        }
        match store.expired_orders(now, PASS_LIMIT) {
            Ok(expired) => {
                for order in expired {
                    if stop() {
                        return changed;
                    }
                    let no = order.out_trade_no.clone();
                    match self.close(config, store, order, now) {
                        Ok(_) | Err(ApiError::OrderPaid) => changed += 1,
                        // WeChat Pay refused this one: the next order may still close.
                        Err(e @ ApiError::PayError { wechatpay_code: Some(_), .. }) => {
                            log::warn!("maintenance: expired order {no} could not be closed: {e}");
                        }
                        Err(e) => {
                            log::warn!("maintenance: expired order {no} could not be closed: {e}");
                            return changed;
                        }
                    }
                }
            }
            Err(e) => log::warn!("maintenance: expired orders could not be read: {e}"),
        }
        match store.refunds_due_for_query(now, PASS_LIMIT) {
            Ok(due) => {
                for refund in due {
                    if stop() {
                        return changed;
                    }
                    match self.pass_refund(store, refund, now) {
                        Ok(true) => changed += 1,
                        Ok(false) => {}
                        Err(()) => return changed,
                    }
                }
            }
            Err(e) => log::warn!("maintenance: refunds due for a query could not be read: {e}"),
        }
        changed
    }

    /// Follows one refund not final: asks WeChat Pay again for one it never answered
    /// (the same out_refund_no, so it refunds once), queries one it accepted. `Err` when
    /// WeChat Pay could not be asked (the pass stops).
    fn pass_refund(&self, store: &Store, refund: Refund, now: i64) -> Result<bool, ()> {
        let no = refund.out_refund_no.clone();
        let answer = if refund.refund_id.is_none() { self.ask_refund(store, &refund) } else { self.query_refund(&no) };
        let changed = match answer {
            Ok(w) => match self.apply_refund(store, &refund, &w, now) {
                Ok(RefundApplied::Changed(_)) => true,
                Ok(_) => false,
                Err(e) => {
                    log::warn!("maintenance: refund {no} could not be recorded: {e}");
                    false
                }
            },
            Err(PayError::Refused { status, code }) if status < 500 && refund.refund_id.is_none() => {
                log::warn!("maintenance: WeChat Pay refused refund {no} ({code})");
                return Ok(self.refused_refund(store, &refund, now));
            }
            Err(PayError::Refused { code, .. }) => {
                log::warn!("maintenance: WeChat Pay refused the query of refund {no} ({code})");
                false
            }
            Err(e) => {
                log::warn!("maintenance: WeChat Pay could not be asked about refund {no}: {e}");
                return Err(());
            }
        };
        if !changed {
            if let Err(e) = store.note_refund_queried(&no, now) {
                log::warn!("maintenance: refund {no}: {e}");
            }
        }
        Ok(changed)
    }

    fn query_refund(&self, out_refund_no: &str) -> Result<WeChatRefund, PayError> {
        self.counted("query_refund", self.client.query_refund(out_refund_no))
    }

    /// Sends a recorded refund to WeChat Pay, with its recorded parameters (a retry
    /// carrying another reason must not make WeChat Pay see other parameters).
    fn ask_refund(&self, store: &Store, refund: &Refund) -> Result<WeChatRefund, PayError> {
        let total = match store.order(&refund.out_trade_no) {
            Ok(Some(o)) => o.amount,
            Ok(None) => return Err(PayError::Invalid("the refund's order is missing")),
            Err(e) => {
                log::error!("refund {}: its order could not be read: {e}", refund.out_refund_no);
                return Err(PayError::Invalid("the refund's order could not be read"));
            }
        };
        let asked = RefundRequest {
            out_trade_no: &refund.out_trade_no,
            out_refund_no: &refund.out_refund_no,
            reason: refund.reason.as_deref(),
            notify_url: &self.config.notify_url,
            refund: refund.amount,
            total,
        };
        self.counted("refund", self.client.refund(&asked))
    }

    /// Refunds `amount` of a paid order, idempotent on `out_refund_no` (pay.md): the
    /// refund is recorded first, then WeChat Pay is asked, unless it already has it (a
    /// retry: then it is not asked again). 201 for a new refund, 200 for the same again.
    /// A refusal by WeChat Pay forgets the refund once WeChat Pay says it does not have
    /// it; no answer keeps it `processing`, for a retry with the same number or the
    /// maintenance task.
    pub fn refund(&self, store: &Store, new: &NewRefund, now: i64) -> Result<(u16, Refund), ApiError> {
        let (status, refund) = match store.create_refund(new)? {
            RefundCreated::New(r) => (201, r),
            RefundCreated::Same(r) => (200, r),
            RefundCreated::Conflict(_) => return Err(ApiError::RefundConflict),
            RefundCreated::NoOrder => return Err(ApiError::NotFound),
            RefundCreated::NotPaid(_) => return Err(ApiError::OrderNotPaid),
            RefundCreated::TooMuch { left } => {
                return Err(ApiError::InvalidField(format!(
                    "`amount` is more than what is left to refund of the order ({left} fen)."
                )))
            }
        };
        if refund.refund_id.is_some() {
            return Ok((status, refund));
        }
        let no = &refund.out_refund_no;
        match self.ask_refund(store, &refund) {
            Ok(w) => {
                self.apply_refund(store, &refund, &w, now)?;
            }
            Err(e @ PayError::Refused { status: 400..=499, .. }) => {
                self.refused_refund(store, &refund, now);
                return Err(e.into());
            }
            Err(e) => {
                log::warn!("wechat pay: refund {no} was not answered ({e}); retry it with the same out_refund_no");
                return Err(e.into());
            }
        }
        let refund = store.refund(no)?.ok_or(ApiError::Internal)?;
        Ok((status, refund))
    }

    /// WeChat Pay refused to take a refund we never had an answer for. An earlier attempt
    /// with the same number may still have reached it (an answer lost, then a retry
    /// refused, say rate-limited), so it is asked: a refund it knows is recorded, one it
    /// does not (`RESOURCE_NOT_EXISTS`) is forgotten, so the money it held is free again;
    /// without an answer the refund stays for the maintenance pass. Whether it changed.
    fn refused_refund(&self, store: &Store, refund: &Refund, now: i64) -> bool {
        let no = &refund.out_refund_no;
        match self.query_refund(no) {
            Ok(w) => matches!(self.apply_refund(store, refund, &w, now), Ok(RefundApplied::Changed(_))),
            Err(PayError::Refused { status: 404, .. }) => match store.forget_refund(no) {
                Ok(forgotten) => {
                    log::warn!("wechat pay: refund {no} was refused and is not at WeChat Pay: forgotten");
                    forgotten
                }
                Err(e) => {
                    log::error!("refund {no} could not be forgotten: {e}");
                    false
                }
            },
            Err(e) => {
                log::warn!("wechat pay: refund {no} was refused and could not be looked up ({e}); kept");
                false
            }
        }
    }

    /// Whether WeChat Pay's refund (an answer, a query or a verified notification) is
    /// `refund` of this merchant: its mchid when it names one, the order, the amounts.
    pub fn check_refund(&self, store: &Store, refund: &Refund, w: &WeChatRefund) -> Result<(), String> {
        if w.mchid.as_deref().is_some_and(|m| m != self.config.mchid) {
            return Err("its mchid is not this merchant's".into());
        }
        if w.out_refund_no != refund.out_refund_no || w.out_trade_no != refund.out_trade_no {
            return Err("it is about another refund or order".into());
        }
        if refund.refund_id.as_deref().is_some_and(|id| id != w.refund_id) {
            return Err("its refund_id is not the refund's".into());
        }
        let total = store.order(&refund.out_trade_no).ok().flatten().map(|o| o.amount);
        if w.amount_refund != refund.amount || Some(w.amount_total) != total {
            return Err("its amounts are not the refund's and the order's".into());
        }
        Ok(())
    }

    /// Records WeChat Pay's word on a refund (checked first), exactly once.
    pub fn apply_refund(
        &self,
        store: &Store,
        refund: &Refund,
        w: &WeChatRefund,
        now: i64,
    ) -> Result<RefundApplied, ApiError> {
        let refused = |why: String| ApiError::PayError {
            wechatpay_code: None,
            message: format!("WeChat Pay's answer about refund {} was not applied: {why}.", refund.out_refund_no),
        };
        self.check_refund(store, refund, w).map_err(|why| {
            log::warn!("wechat pay: refund {}: {why}", refund.out_refund_no);
            refused(why)
        })?;
        let state = RefundState::from_wechatpay(&w.status).ok_or_else(|| refused("an unknown status".into()))?;
        let result = RefundResult {
            out_refund_no: &w.out_refund_no,
            refund_id: &w.refund_id,
            state,
            succeeded_at: w.success_time,
        };
        let applied = store.apply_refund(&result, now)?;
        if let RefundApplied::Changed(r) = &applied {
            if r.state == RefundState::Abnormal {
                log::warn!(
                    "wechat pay: refund {} is abnormal: it needs the merchant's action at WeChat Pay",
                    r.out_refund_no
                );
            }
        }
        Ok(applied)
    }

    /// Queries one order; `Err` when WeChat Pay could not be asked (the pass stops).
    fn pass_query(&self, config: &Config, store: &Store, order: Order, now: i64) -> Result<bool, ()> {
        let no = order.out_trade_no.clone();
        match self.ask_and_apply(config, store, order, now) {
            Ok(Synced { outcome: SyncOutcome::Changed, .. }) => return Ok(true),
            Ok(Synced { outcome: SyncOutcome::NotApplied(why), .. }) => {
                log::warn!("maintenance: the query of order {no} was not applied: {why}")
            }
            Ok(_) | Err(SyncError::Unasked(PayError::Refused { .. })) | Err(SyncError::Vanished) => {}
            Err(SyncError::Unasked(e)) => {
                log::warn!("maintenance: WeChat Pay could not be asked about order {no}: {e}");
                return Err(());
            }
            Err(SyncError::Store(e)) => {
                log::warn!("maintenance: the answer about order {no} could not be recorded: {e}")
            }
        }
        if let Err(e) = store.note_queried(&no, now) {
            log::warn!("maintenance: order {no}: {e}");
        }
        Ok(false)
    }
}

/// What [`Payments::ask_and_apply`] found and did.
#[derive(Debug)]
pub struct Synced {
    /// The order as the database has it afterwards.
    pub order: Order,
    /// WeChat Pay's `trade_state`; `None` when it has no such order.
    pub trade_state: Option<String>,
    pub transaction_id: Option<String>,
    pub outcome: SyncOutcome,
}

#[derive(Debug, PartialEq)]
pub enum SyncOutcome {
    /// WeChat Pay has no such order (ORDER_NOT_EXIST: never placed there).
    NotAtWeChatPay,
    /// The order changed here (paid, or closed) as WeChat Pay says.
    Changed,
    /// Nothing to record: already so here, or a state such as NOTPAY.
    Unchanged,
    /// WeChat Pay's answer was not recorded, and why (another merchant, app or amount,
    /// or a payment of an order closed here).
    NotApplied(String),
}

#[derive(Debug)]
pub enum SyncError {
    /// WeChat Pay could not be asked, or refused the query.
    Unasked(PayError),
    Store(StoreError),
    /// The order vanished from the database meanwhile.
    Vanished,
}

/// When each order was last synced with WeChat Pay, for [`SYNC_EVERY`]; bounded.
#[derive(Default)]
struct SyncGate {
    last: Mutex<HashMap<String, Instant>>,
}

impl SyncGate {
    fn allow(&self, out_trade_no: &str, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = last.get(out_trade_no) {
            if now.duration_since(*at) < SYNC_EVERY {
                return false;
            }
        }
        if last.len() >= SYNC_MEMORY && !last.contains_key(out_trade_no) {
            last.retain(|_, at| now.duration_since(*at) < SYNC_EVERY);
            if last.len() >= SYNC_MEMORY {
                return false;
            }
        }
        last.insert(out_trade_no.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_synced_at_most_once_every_two_seconds() {
        let gate = SyncGate::default();
        let t0 = Instant::now();
        assert!(gate.allow("A", t0));
        assert!(!gate.allow("A", t0 + Duration::from_millis(1500)));
        assert!(gate.allow("B", t0 + Duration::from_millis(1500)));
        assert!(gate.allow("A", t0 + Duration::from_millis(2100)));
    }

    #[test]
    fn the_sync_memory_is_bounded() {
        let gate = SyncGate::default();
        let t0 = Instant::now();
        for i in 0..SYNC_MEMORY {
            assert!(gate.allow(&i.to_string(), t0));
        }
        assert!(!gate.allow("one more", t0), "a full memory of recent syncs refuses");
        assert!(gate.allow("one more", t0 + SYNC_EVERY), "old entries make room");
        assert!(gate.last.lock().unwrap().len() <= SYNC_MEMORY);
    }
}
