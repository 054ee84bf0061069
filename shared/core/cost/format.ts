/** Number formatting for explanations: exact enough to check by hand, short when it can be. */

function group(int: string): string {
  // Most amounts and quantities are below 1,000: no grouping to do.
  return int.length > (int[0] === '-' ? 4 : 3) ? int.replace(/\B(?=(\d{3})+(?!\d))/g, ',') : int;
}

function trimmed(n: number, maxDecimals: number, minDecimals: number): string {
  // Whole numbers (hours, request counts, whole dollars) are the common case: skip toFixed.
  if (Number.isInteger(n) && Math.abs(n) < 1e15) {
    const int = group(String(n));
    return minDecimals > 0 ? `${int}.${'0'.repeat(minDecimals)}` : int;
  }
  const s = n.toFixed(maxDecimals);
  const dot = s.indexOf('.');
  const int = dot < 0 ? s : s.slice(0, dot);
  let end = s.length;
  while (end > dot + 1 && s.charCodeAt(end - 1) === 48) end--;
  let d = dot < 0 ? '' : s.slice(dot + 1, end);
  if (d.length < minDecimals) d = d.padEnd(minDecimals, '0');
  const grouped = group(int);
  return d.length ? `${grouped}.${d}` : grouped;
}

/** A quantity: up to 6 decimals, trailing zeros dropped, thousands grouped. */
export function fmtQty(n: number): string {
  return trimmed(n, 6, 0);
}

/** Money: cents when the amount is whole cents, otherwise up to 6 decimals. */
export function fmtMoney(n: number, currency: string): string {
  const cents = Math.abs(n * 100 - Math.round(n * 100)) < 1e-7;
  const body = cents ? trimmed(n, 2, 2) : trimmed(n, 6, 2);
  return currency === 'USD' ? `$${body}` : `${body} ${currency}`;
}
