/**
 * The status page's stylesheet and script, served as files (`/status.css`, `/status.js`) so the
 * Content-Security-Policy allows no inline script or style at all. No build step: plain CSS and a
 * few lines of plain JavaScript.
 */

export const STATUS_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1d232a; background: #f6f7f9; }
h1 { font-size: 1.4rem; margin: 1rem 0 .2rem; }
h2 { font-size: 1rem; margin: 0 0 .5rem; }
header p { margin: 0 0 .5rem; color: #4a5561; }
main { display: flex; flex-wrap: wrap; gap: 1rem; }
.box { background: #fff; border: 1px solid #d8dde3; border-radius: 6px; padding: .8rem 1rem; flex: 1 1 20rem; }
.box.wide { flex: 1 1 100%; }
svg#chart { width: 100%; max-width: 1100px; height: auto; display: block; }
td.time { white-space: nowrap; }
td.time .session { font-size: .8em; color: #4a5561; }
.axis { stroke: #8a96a3; }
.tick { font-size: 10px; fill: #4a5561; }
.legend { list-style: none; padding: 0; margin: .4rem 0 0; display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; }
.swatch { display: inline-block; width: .8em; height: .8em; margin-right: .35em; vertical-align: -1px; border-radius: 2px; }
.c0 { fill: #d1495b; background: #d1495b; } .c1 { fill: #edae49; background: #edae49; }
.c2 { fill: #00798c; background: #00798c; } .c3 { fill: #30638e; background: #30638e; }
.c4 { fill: #8e5572; background: #8e5572; } .c5 { fill: #6a994e; background: #6a994e; }
.c6 { fill: #bc4b51; background: #bc4b51; } .c7 { fill: #5b8e7d; background: #5b8e7d; }
.c8 { fill: #f4a259; background: #f4a259; } .c9 { fill: #7d4e57; background: #7d4e57; }
.c10 { fill: #3d5a80; background: #3d5a80; } .c11 { fill: #98c1d9; background: #98c1d9; }
.none { background: #c9d1d9; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #eceff2; vertical-align: top; }
th { font-weight: 600; color: #4a5561; }
td { overflow-wrap: anywhere; }
tr.reject .verdict { color: #b00020; font-weight: 600; }
tr.defer .verdict { color: #a05a00; font-weight: 600; }
tr.accept .verdict { color: #1b7a3a; font-weight: 600; }
.reason { color: #4a5561; font-size: .9em; }
details ol { margin: .3rem 0; padding-left: 1.4rem; }
.step.skip, .step.next { color: #6b7682; }
.ms { color: #8a96a3; font-size: .85em; }
.state.good { color: #1b7a3a; font-weight: 600; }
.state.bad { color: #b00020; font-weight: 600; }
.state.unknown, .unknown { color: #6b7682; }
form { margin-bottom: .5rem; }
input[type=search] { width: 22rem; max-width: 100%; padding: .25rem .4rem; }
.notes { color: #6b4e00; margin: 0 0 .5rem; }
.notes .problem { color: #b00020; font-weight: 600; }
.empty { color: #6b7682; }
`;

/**
 * Filters the decisions as the admin types (the rows' `data-search`, which holds the addresses as
 * shown, already rewritten to the privacy level); Enter asks the server (`?q=`), which also finds a
 * hashed address by its address in clear. Reloads the page every 30 s when "live" is ticked.
 */
export const STATUS_JS = `'use strict';
document.addEventListener('DOMContentLoaded', function () {
  var q = document.getElementById('q');
  var shown = document.getElementById('shown');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#decisions tbody tr'));
  if (!q || !shown) return;
  function filter() {
    var words = q.value.trim().toLowerCase().split(/\\s+/).filter(Boolean);
    var n = 0;
    rows.forEach(function (tr) {
      var h = tr.getAttribute('data-search') || '';
      var ok = words.every(function (w) { return h.indexOf(w) >= 0; });
      tr.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n + ' of ' + rows.length;
  }
  q.addEventListener('input', filter);
  // Live: reload every 30 s while the box is ticked and the search is what the page was asked for
  // (not while the admin types). The choice lasts for the tab (sessionStorage).
  var live = document.getElementById('live');
  if (!live) return;
  var asked = q.value;
  try { live.checked = sessionStorage.getItem('mxguard-live') === '1'; } catch (e) {}
  live.addEventListener('change', function () {
    try { sessionStorage.setItem('mxguard-live', live.checked ? '1' : '0'); } catch (e) {}
  });
  setInterval(function () {
    if (live.checked && q.value === asked) location.reload();
  }, 30000);
});
`;

/** The page's icon (so the browser does not ask for a /favicon.ico that is not there). */
export const STATUS_ICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M8 1 2 3.5v4C2 11 4.6 14 8 15c3.4-1 6-4 6-7.5v-4z" fill="#30638e"/></svg>';
