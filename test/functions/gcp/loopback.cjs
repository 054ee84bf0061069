// Preloaded (node --require) into the function servers the tests start: the Functions Framework
// listens on every interface given only a port; under test it listens on 127.0.0.1 only.
const net = require('node:net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const portOnly = typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]));
  if (portOnly && (args.length === 1 || typeof args[1] === 'function')) {
    return listen.call(this, Number(args[0]), '127.0.0.1', ...args.slice(1));
  }
  return listen.apply(this, args);
};
