/** Number formatting for explanations: exact enough to check by hand, short when it can be. */

function trimmed(n: number, maxDecimals: number, minDecimals: number): string {
  const s = n.toFixed(maxDecimals);
  const [int, dec = ''] = s.split('.');
  let d = dec.replace(/0+$/, '');
  if (d.length < minDecimals) d = d.padEnd(minDecimals, '0');
  const grouped = int!.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
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
