// Types for wxlogin.js, the mini-program client of wxlogin.

export interface User {
  id: number;
  app: string;
  openid?: string;
  unionid: string | null;
  nickname: string | null;
  avatar_url: string | null;
  gender: number | null;
  phone_number: string | null;
  country_code: string | null;
  created_at: number;
  last_login_at: number;
}

export interface LoginResult {
  token: string;
  token_type: 'Bearer';
  expires_in: number;
  new_user: boolean;
  user: User;
  decrypted?: Decrypted;
}

export interface SessionInfo {
  user: User;
  app: string;
  expires_at: number;
}

export interface Decrypted {
  kind: 'user_info' | 'phone' | 'other';
  data: Record<string, unknown>;
}

/** What WeChat's open-data APIs hand the mini-program (snake_case accepted too). */
export interface OpenData {
  encryptedData?: string;
  encrypted_data?: string;
  iv: string;
  rawData?: string;
  raw_data?: string;
  signature?: string;
}

export interface PhoneNumber {
  phone_number: string;
  pure_phone_number: string;
  country_code: string;
}

/** A WeChat Pay order, as the server keeps it (amounts in fen, times in Unix seconds). */
export interface Order {
  out_trade_no: string;
  app: string;
  user_id: number;
  product: string | null;
  description: string;
  amount: number;
  currency: string;
  attach: string | null;
  state: 'created' | 'paid' | 'closed' | 'refunded';
  transaction_id: string | null;
  paid_at: number | null;
  expires_at: number;
  refunded_amount: number;
  created_at: number;
  refunds: unknown[];
}

/** What the server signs for wx.requestPayment, handed to it as it is. */
export interface PaymentParams {
  timeStamp: string;
  nonceStr: string;
  package: string;
  signType: 'RSA';
  paySign: string;
}

/** Exactly one of them: a configured product, or an order your own service created. Never an amount. */
export type PayOptions = { product: string; outTradeNo?: undefined } | { outTradeNo: string; product?: undefined };

export interface RequestOptions {
  /** A path on baseUrl ("/v1/me", "/api/orders") or an absolute http(s) URL. */
  url?: string;
  path?: string;
  /** What wx.request can send: no PATCH (it rejects with code `invalid_method`). */
  method?: 'OPTIONS' | 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE' | 'TRACE' | 'CONNECT';
  data?: unknown;
  header?: Record<string, string>;
}

export interface Response<T = any> {
  statusCode: number;
  data: T;
  header: Record<string, string>;
}

/** Every rejection of the client. */
export interface WxLoginError extends Error {
  /**
   * The server's error.code, or network_error, wx_login_failed, phone_denied, invalid_method;
   * from pay(): pay_cancelled (the user closed the payment sheet), pay_failed (another
   * wx.requestPayment failure), pay_pending (paid perhaps, but not confirmed after the
   * bounded polling: ask again later), pay_closed (the order closed meanwhile).
   */
  code: string;
  /** The HTTP status, 0 when there was no HTTP answer. */
  status: number;
  /** The server's X-Request-Id, when there was an answer. */
  requestId?: string;
  /** WeChat's errcode, when the server reported one. */
  wechatErrcode?: number;
  /** WeChat Pay's error code (e.g. "SIGN_ERROR"), when the server reported one. */
  wechatpayCode?: string;
  /** pay() rejections: the order as the server last described it (at least its out_trade_no). */
  order?: Partial<Order> & { out_trade_no: string };
}

/** The subset of the mini-program `wx` object the client uses. */
export interface WxLike {
  login(options: { success?(res: { code: string; errMsg?: string }): void; fail?(res: { errMsg: string }): void }): void;
  request(options: {
    url: string; method?: string; data?: unknown; header?: Record<string, string>; timeout?: number; dataType?: string;
    success?(res: { statusCode: number; data: any; header: Record<string, string> }): void;
    fail?(res: { errMsg: string }): void;
  }): unknown;
  /** Needed by pay() only. */
  requestPayment?(options: PaymentParams & {
    success?(res: { errMsg: string }): void;
    fail?(res: { errMsg: string }): void;
  }): void;
  getStorageSync(key: string): any;
  setStorageSync(key: string, value: any): void;
  removeStorageSync(key: string): void;
}

export interface ClientOptions {
  /** Where wxlogin is served, e.g. "https://login.example.com" (a request domain of the app). */
  baseUrl: string;
  /** The app name from appliance.toml; may be left out when the server has one app. */
  app?: string;
  /** The wx storage key of the session; default "wxlogin.session". */
  storageKey?: string;
  /** Defaults to the global `wx`. */
  wx?: WxLike;
  /** wx.request timeout in milliseconds; default 15000. */
  timeout?: number;
}

export interface Client {
  /** wx.login + POST /v1/login (with a fresh Idempotency-Key per code); stores the token. Concurrent callers share one login. */
  login(): Promise<LoginResult>;
  /** An authenticated wx.request; logs in first when needed, and once more on a 401. */
  request<T = any>(options: RequestOptions): Promise<Response<T>>;
  /** A fresh wx.login, THEN getData(), then one combined POST /v1/login. getData must fetch the data when called. */
  decrypt(getData: () => OpenData | Promise<OpenData>): Promise<Decrypted>;
  /** POST /v1/me/phone with the getPhoneNumber button's code, or the button event itself. */
  getPhoneNumber(codeOrEvent: string | { detail: { code?: string; errMsg?: string } }): Promise<PhoneNumber>;
  me(): Promise<User>;
  /** POST /v1/me (a partial update; wx.request has no PATCH). */
  updateProfile(fields: { nickname?: string; avatar_url?: string }): Promise<User>;
  session(): Promise<SessionInfo>;
  /** DELETE /v1/session, then clears storage even when the server cannot be reached. */
  logout(): Promise<void>;
  /**
   * WeChat Pay: creates the order of a product (or gets fresh parameters for an existing
   * order), calls wx.requestPayment with the server's parameters, then asks
   * GET /v1/pay/orders/{no}?sync=true (6 times at most, pauses from 500 ms) until the
   * order is paid. Resolves with the paid Order; rejects with pay_cancelled, pay_failed,
   * pay_pending or pay_closed (with `.order`), or the server's error code.
   */
  pay(options: PayOptions): Promise<Order>;
  /** The stored token, or null. */
  token(): string | null;
  isLoggedIn(): boolean;
}

export function createClient(options: ClientOptions): Client;
