// End-to-end smoke test of a Myelin server with matrix-js-sdk, the engine of
// Element Web: register, create a room, send, receive by /sync, then an
// end-to-end encrypted exchange between two clients using the SDK's Rust
// crypto (WASM, in-memory store).
//
//   node smoke.mjs BASE_URL
//
// Prints one JSON line per step: {"step", "result": pass|fail|skip,
// "reason"?}; conformance/run.sh records them as subtests of
// "jssdk TestSmoke". Steps after a failed one are skipped: they depend on it.
// Exits 1 if any step failed.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const baseUrl = process.argv[2];
if (!baseUrl) {
  console.error("usage: node smoke.mjs BASE_URL");
  process.exit(2);
}

// The SDK logs every request and sync at debug level; only problems matter.
logger.setLevel("warn");

const stepTimeoutMs = 30_000;
const password = "smoke-test-password-1";
const run = Date.now().toString(36);

const report = (step, result, reason) =>
  console.log(JSON.stringify(reason ? { step, result, reason } : { step, result }));

/** Rejects after ms with a message naming what was awaited. */
function withTimeout(promise, what, ms = stepTimeoutMs) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000}s waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves once emitter fires event with arguments accepted by match. */
function waitFor(emitter, event, match, what) {
  let listener;
  const p = new Promise((resolve) => {
    listener = (...args) => {
      if (match(...args)) resolve(args);
    };
    emitter.on(event, listener);
  });
  return withTimeout(p, what).finally(() => emitter.off(event, listener));
}

async function register(localpart) {
  const anon = sdk.createClient({ baseUrl });
  const res = await anon.registerRequest({
    username: localpart,
    password,
    auth: { type: "m.login.dummy" },
    initial_device_display_name: "jssdk smoke",
  });
  if (!res.access_token || !res.user_id || !res.device_id) {
    throw new Error(`register ${localpart}: response lacks user_id/access_token/device_id`);
  }
  return res;
}

async function login(userId) {
  const anon = sdk.createClient({ baseUrl });
  return anon.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: userId },
    password,
  });
}

function clientFor(creds) {
  return sdk.createClient({
    baseUrl,
    userId: creds.user_id,
    accessToken: creds.access_token,
    deviceId: creds.device_id,
  });
}

async function start(client) {
  const prepared = waitFor(client, sdk.ClientEvent.Sync, (state) => state === "PREPARED", `${client.getUserId()} initial sync`);
  const failed = waitFor(client, sdk.ClientEvent.Sync, (state) => state === "ERROR", "").then(() => {
    throw new Error(`${client.getUserId()}: sync failed`);
  });
  failed.catch(() => {});
  await client.startClient({ initialSyncLimit: 10 });
  await Promise.race([prepared, failed]);
}

/** Resolves when client sees a timeline event in roomId whose content matches. */
function waitForMessage(client, roomId, body, what) {
  return waitFor(
    client,
    sdk.RoomEvent.Timeline,
    (event, room) => room?.roomId === roomId && event.getType() === "m.room.message" && event.getContent()?.body === body,
    what,
  );
}

/** Resolves when client sees userId joined to roomId. */
async function waitForJoin(client, roomId, userId) {
  const member = () => client.getRoom(roomId)?.getMember(userId);
  if (member()?.membership === "join") return;
  await waitFor(
    client,
    sdk.RoomMemberEvent.Membership,
    (_event, m) => m.roomId === roomId && m.userId === userId && m.membership === "join",
    `${client.getUserId()} to see ${userId} join`,
  );
}

/** Resolves with the decrypted body of the encrypted event carrying marker. */
function waitForDecrypted(client, roomId, marker, what) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const check = (event) => {
        if (event.getRoomId() !== roomId || !event.isEncrypted()) return;
        if (event.isDecryptionFailure()) {
          reject(new Error(`${what}: decryption failed: ${event.decryptionFailureReason}`));
          return;
        }
        if (event.getContent()?.body === marker) resolve(event);
      };
      client.on(sdk.MatrixEventEvent.Decrypted, check);
      client.on(sdk.RoomEvent.Timeline, (event) => {
        if (!event.isBeingDecrypted() && !event.isDecryptionFailure()) check(event);
      });
    }),
    what,
  );
}

const steps = [];
const step = (name, fn) => steps.push({ name, fn });
const state = {};

step("register", async () => {
  state.alice = await register(`alice-${run}`);
  state.bob = await register(`bob-${run}`);
});

step("create_room", async () => {
  state.aliceClient = clientFor(state.alice);
  state.bobClient = clientFor(state.bob);
  const { room_id } = await state.aliceClient.createRoom({
    preset: "private_chat",
    name: "jssdk smoke",
    invite: [state.bob.user_id],
  });
  state.roomId = room_id;
});

step("initial_sync", async () => {
  await start(state.aliceClient);
  await start(state.bobClient);
});

step("join", async () => {
  await withTimeout(state.bobClient.joinRoom(state.roomId), "bob to join");
  await waitForJoin(state.aliceClient, state.roomId, state.bob.user_id);
});

step("send_and_sync", async () => {
  const body = `hello from alice ${run}`;
  const received = waitForMessage(state.bobClient, state.roomId, body, "bob to receive alice's message by /sync");
  await state.aliceClient.sendEvent(state.roomId, "m.room.message", { msgtype: "m.text", body });
  await received;
});

step("crypto_login", async () => {
  // Fresh devices for the encrypted part, so the plain steps above do not
  // depend on the key endpoints.
  state.alice2 = await login(state.alice.user_id);
  state.bob2 = await login(state.bob.user_id);
  state.aliceCrypto = clientFor(state.alice2);
  state.bobCrypto = clientFor(state.bob2);
  for (const c of [state.aliceCrypto, state.bobCrypto]) {
    await c.initRustCrypto({ useIndexedDB: false });
    await start(c);
  }
});

step("encrypted_room", async () => {
  const { room_id } = await state.aliceCrypto.createRoom({
    preset: "private_chat",
    name: "jssdk smoke (encrypted)",
    invite: [state.bob.user_id],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  state.encRoomId = room_id;
  await withTimeout(state.bobCrypto.joinRoom(room_id), "bob to join the encrypted room");
  await waitForJoin(state.aliceCrypto, room_id, state.bob.user_id);
});

step("encrypted_exchange", async () => {
  const toBob = `secret for bob ${run}`;
  const bobGot = waitForDecrypted(state.bobCrypto, state.encRoomId, toBob, "bob to decrypt alice's message");
  const sent = await state.aliceCrypto.sendEvent(state.encRoomId, "m.room.message", { msgtype: "m.text", body: toBob });
  const plainOnServer = await state.aliceCrypto.fetchRoomEvent(state.encRoomId, sent.event_id);
  if (plainOnServer.type !== "m.room.encrypted") {
    throw new Error(`the server stored alice's message as ${plainOnServer.type}, not m.room.encrypted`);
  }
  await bobGot;
  const toAlice = `secret for alice ${run}`;
  const aliceGot = waitForDecrypted(state.aliceCrypto, state.encRoomId, toAlice, "alice to decrypt bob's reply");
  await state.bobCrypto.sendEvent(state.encRoomId, "m.room.message", { msgtype: "m.text", body: toAlice });
  await aliceGot;
});

let failed = false;
for (const { name, fn } of steps) {
  if (failed) {
    report(name, "skip", "an earlier step failed");
    continue;
  }
  try {
    await fn();
    report(name, "pass");
  } catch (err) {
    failed = true;
    report(name, "fail", String(err?.message ?? err).slice(0, 500));
  }
}
for (const c of [state.aliceClient, state.bobClient, state.aliceCrypto, state.bobCrypto]) {
  c?.stopClient();
}
process.exit(failed ? 1 : 0);
