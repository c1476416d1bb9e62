// The actions of the Switchyard console: switch, rollback, promote,
// canary, mirror and warmup. Each asks in an in-page dialog first, shows a
// refusal with its reasons, and cannot be sent twice.

import { $, el, setText, other, COLORS } from './dom.js';
import { fmtAgo, fmtNs, fmtPercent } from './format.js';

// initActions wires the buttons and forms. app: {status() (the last GET
// /admin/status), api(method, path, body, headers), busy(), setBusy(v),
// refreshNow(), needToken(message)}.
export function initActions(app) {
  // ---- actions ----

  const confirmDlg = $('confirm');
  let pending = null; // the action the confirm dialog asks about

  function toast(text) {
    const t = $('toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
  }


  // ask opens the confirm dialog for an action. spec: {title, body, ok,
  // force (label of the force box, or null), run(force) -> api result,
  // done(result) -> text}.
  function ask(spec) {
    if (app.busy() || !app.status()) return;
    pending = spec;
    setText('confirm-title', spec.title);
    setText('confirm-body', spec.body);
    $('confirm-force-row').hidden = !spec.force;
    $('confirm-force').checked = false;
    setText('confirm-force-label', spec.force || '');
    $('confirm-error').hidden = true;
    const ok = $('confirm-ok');
    ok.textContent = spec.ok;
    ok.disabled = false;
    ok.className = `btn ${spec.danger ? 'danger' : 'primary'}`;
    confirmDlg.showModal();
    $('confirm-cancel').focus();
  }

  function showRefusal(r) {
    const d = r.data || {};
    let msg = d.message || `The gateway answered ${r.status}.`;
    if (r.status === 412) msg = 'The routing state changed while this dialog was open. Look at the page again, then confirm.';
    setText('confirm-error-msg', msg);
    const items = [];
    const refused = d.refused;
    if (refused && refused.backends) {
      for (const [addr, why] of Object.entries(refused.backends).sort()) {
        items.push(el('li', { 'data-addr': addr }, el('span', { class: 'addr', text: addr }), `: ${why}`));
      }
    }
    if (refused && refused.reason) items.push(el('li', { text: refused.reason }));
    if (d.verdict && d.verdict.reasons) for (const why of d.verdict.reasons) items.push(el('li', { text: why }));
    $('confirm-reasons').replaceChildren(...items);
    $('confirm-error').hidden = false;
  }

  $('confirm-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (app.busy() || !pending) return;
    const spec = pending;
    const ok = $('confirm-ok');
    const cancel = $('confirm-cancel');
    const label = ok.textContent;
    app.setBusy(true);
    ok.disabled = true;
    cancel.disabled = true;
    ok.setAttribute('aria-busy', 'true');
    ok.textContent = 'Working…';
    let keepOpen = true;
    try {
      const r = await spec.run($('confirm-force').checked);
      if (r.status === 401) {
        keepOpen = false;
        confirmDlg.close();
        app.needToken('The gateway refused the token, so nothing was changed. Enter the current token.');
        return;
      }
      if (r.ok) {
        keepOpen = false;
        confirmDlg.close();
        toast(spec.done(r));
      } else {
        showRefusal(r);
      }
    } catch (e) {
      setText('confirm-error-msg', `No answer: ${e.message}. The action may or may not have been applied; check the page before trying again.`);
      $('confirm-reasons').replaceChildren();
      $('confirm-error').hidden = false;
    } finally {
      ok.removeAttribute('aria-busy');
      ok.disabled = false;
      cancel.disabled = false;
      ok.textContent = keepOpen ? 'Try again' : label;
      app.setBusy(false);
      app.refreshNow();
    }
  });
  $('confirm-cancel').addEventListener('click', () => { if (!app.busy()) confirmDlg.close(); });
  confirmDlg.addEventListener('cancel', (ev) => { if (app.busy()) ev.preventDefault(); });
  confirmDlg.addEventListener('close', () => { pending = null; });

  $('switch-btn').addEventListener('click', () => {
    const from = app.status().active;
    const to = other(from);
    // The switch applies only to the state the operator saw (If-Match);
    // after a 412 the retry uses the generation the gateway reported.
    let gen = app.status().generation;
    const tp = app.status().pools[to];
    ask({
      title: `Switch live traffic to ${to}?`,
      body: `All traffic moves from ${from} (${app.status().active_version}) to ${to} (${tp.version}) at once. Requests in flight on ${from} finish there; nothing is cut.`,
      ok: `Switch to ${to}`,
      force: `Force: switch even if ${to} is not ready`,
      run: async (force) => {
        const r = await app.api('POST', '/admin/switch', { to, force }, { 'If-Match': `"${gen}"` });
        if (r.status === 412 && r.etag) gen = Number(r.etag.replace(/\D/g, '')) || gen;
        return r;
      },
      done: (r) => (r.data.noop ? `${to} is already live.` : `Switched to ${r.data.to} (${r.data.version}) in ${fmtNs(r.data.swap_ns)}, generation ${r.data.generation}.`),
    });
  });

  $('rollback-btn').addEventListener('click', () => {
    const hist = app.status().switches || [];
    const last = hist[hist.length - 1];
    if (!last) return;
    ask({
      title: `Roll back to ${last.from}?`,
      body: `Traffic goes back to ${last.from}, the color before the last switch (${fmtAgo(last.at)}, ${last.trigger}).`,
      ok: `Roll back to ${last.from}`,
      force: `Force: roll back even if ${last.from} is not ready`,
      danger: true,
      run: (force) => app.api('POST', '/admin/rollback', { force }),
      done: (r) => (r.data.noop ? 'Nothing to do.' : `Rolled back to ${r.data.to} (${r.data.version}), generation ${r.data.generation}.`),
    });
  });

  $('promote-btn').addEventListener('click', () => {
    const to = other(app.status().active);
    ask({
      title: `Promote ${to}?`,
      body: `Switches all traffic to ${to} only if the analysis of its canary or shadow traffic passes right now.`,
      ok: `Promote ${to}`,
      run: () => app.api('POST', '/admin/promote'),
      done: (r) => `Promoted: ${r.data.switch.to} (${r.data.switch.version}) is live, generation ${r.data.switch.generation}.`,
    });
  });

  function percentOf(input) {
    const v = Number(input.value);
    if (input.value.trim() === '' || !Number.isFinite(v) || v < 0 || v > 100) {
      input.setCustomValidity('A percent from 0 to 100');
      input.reportValidity();
      return null;
    }
    input.setCustomValidity('');
    return v;
  }

  $('canary-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = percentOf($('canary-input'));
    if (p === null) return;
    const to = other(app.status().active);
    ask({
      title: p > 0 ? `Send ${fmtPercent(p)} of traffic to ${to}?` : 'End the canary?',
      body: p > 0
        ? `${fmtPercent(p)} of live requests go to ${to} (${app.status().pools[to].version}); ${app.status().active} keeps the rest. A standby with no ready backend gets none.`
        : `All live traffic goes back to ${app.status().active}.`,
      ok: p > 0 ? `Send ${fmtPercent(p)}` : 'End canary',
      run: () => app.api('PUT', '/admin/traffic', { [to]: p }),
      done: (r) => `Traffic: blue ${fmtPercent(r.data.weights.blue)}, green ${fmtPercent(r.data.weights.green)}.`,
    });
  });

  $('mirror-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = other(app.status().active);
    if (app.status().traffic && app.status().traffic.mirror) {
      ask({
        title: 'Stop the mirror?',
        body: `No more copies of live requests go to ${app.status().traffic.mirror.to}.`,
        ok: 'Stop mirror',
        run: () => app.api('PUT', '/admin/traffic', { mirror: null }),
        done: () => 'Mirror stopped.',
      });
      return;
    }
    const p = percentOf($('mirror-input'));
    if (p === null) return;
    ask({
      title: `Mirror ${fmtPercent(p)} of traffic to ${to}?`,
      body: `A copy of ${fmtPercent(p)} of live requests goes to ${to} (${app.status().pools[to].version}) after the client has its answer; the copies' answers are compared and discarded.`,
      ok: 'Start mirror',
      run: () => app.api('PUT', '/admin/traffic', { mirror: { to, percent: p } }),
      done: () => `Mirroring ${fmtPercent(p)} to ${to}.`,
    });
  });

  for (const c of COLORS) {
    $(`warmup-${c}`).addEventListener('click', () => {
      ask({
        title: `Re-run warmup on ${c}?`,
        body: `Every ${c} backend (${app.status().pools[c].version}) runs its warmup inference again. They keep serving meanwhile.`,
        ok: 'Re-run warmup',
        run: () => app.api('POST', '/admin/warmup', { color: c }),
        done: () => `Warmup started on ${c}.`,
      });
    });
  }
}
