// The web that `npm run eval:tools` searches and reads: one loopback server
// that is a fake SearXNG (`/search?format=json`) and a handful of small sites
// whose host names end in `.test`. That TLD is reserved and never resolves
// for real, so the eval's own DNS answers for these names alone, and the
// pages are the same in fake and real mode: a real model is then scored on
// text we know.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Page {
  type: string;
  body: string;
}

const html = (title: string, lang: string, paragraphs: string[]): Page => ({
  type: 'text/html; charset=utf-8',
  body:
    `<!doctype html><html lang="${lang}"><head><meta charset="utf-8"><title>${title}</title></head><body>` +
    `<nav><a href="/">Home</a> · <a href="/contact">Contact</a></nav>` +
    `<main><article><h1>${title.split(' – ')[0]}</h1>${paragraphs.map((p) => `<p>${p}</p>`).join('')}</article></main>` +
    `<footer>© Example site · <a href="/privacy">Privacy</a></footer></body></html>`,
});

/** The pages by `host/path`; the fixture's web_fetch cases point at these. */
const PAGES: Record<string, Page> = {
  'bakkerij-vandam.test/openingstijden': html('Openingstijden – Bakkerij Van Dam', 'nl', [
    'Bakkerij Van Dam aan de Oudegracht is geopend van dinsdag tot en met vrijdag van 07:30 tot 18:00 uur en op zaterdag van 07:00 tot 16:00 uur.',
    'Op zondag en maandag zijn we gesloten. Taarten graag twee dagen van tevoren bestellen.',
  ]),
  'stadtwerke-musterstadt.test/stoerungen': html('Aktuelle Störungen – Stadtwerke Musterstadt', 'de', [
    'Wegen Arbeiten am Netz wird am Dienstag, 14. Oktober, zwischen 9 und 13 Uhr in der Lindenstraße und im Ahornweg der Strom abgeschaltet.',
    'Bitte schalten Sie empfindliche Geräte vorher aus. Fragen beantwortet unsere Hotline rund um die Uhr.',
  ]),
  'eugpt-docs.test/blog/self-hosting': html('Running eugpt on a single small server – eugpt blog', 'en', [
    'For a team of up to fifty people, one server with two cores and 4 GB of memory is enough.',
    'The embedded PGlite database needs no separate service; switch to PostgreSQL when you run more than one instance.',
    'Put a reverse proxy with TLS in front of it and keep the admin token out of shell history.',
  ]),
  'eugpt-docs.test/release-notes': html('Release notes: eugpt 2.4', 'en', [
    'Version 2.4 adds citations to streamed answers and a calculator that understands units.',
    'It drops support for Node 18. Operators upgrading from 2.3 must run the database migration before starting the new version.',
  ]),
  'mairie-villeneuve.test/dechetterie': html('Déchetterie municipale – Mairie de Villeneuve', 'fr', [
    'La déchetterie de la route de Lyon est ouverte du lundi au samedi, de 8 h 30 à 12 h et de 13 h 30 à 17 h 45.',
    'Elle est fermée le dimanche et les jours fériés. Les déchets verts et les gravats sont acceptés jusqu’à 1 m³ par semaine.',
  ]),
  'ayuntamiento-sanroque.test/fiestas': html('Fiestas patronales – Ayuntamiento de San Roque', 'es', [
    'Las fiestas patronales se celebran del 12 al 16 de agosto.',
    'El concierto principal será el viernes 15 en la Plaza Mayor a las 22:00, y los fuegos artificiales cierran las fiestas el sábado 16 a medianoche.',
  ]),
  'comune-valdoro.test/tari': html('TARI: scadenze e pagamenti – Comune di Valdoro', 'it', [
    'La tassa sui rifiuti (TARI) si paga in due rate: la prima entro il 31 maggio, la seconda entro il 30 novembre.',
    'È possibile pagare in un’unica soluzione entro il 16 giugno, con il modello F24 o presso lo sportello comunale.',
  ]),
  'biblioteka-krakowska.test/godziny': html('Godziny otwarcia – Biblioteka Krakowska', 'pl', [
    'Wypożyczalnia główna jest czynna od poniedziałku do piątku w godzinach 9:00–19:00, a w soboty 10:00–14:00.',
    'W niedziele i święta biblioteka jest nieczynna.',
  ]),
  'kommun-sjoby.test/badplatser': html('Badplatser och vattentemperatur – Sjöby kommun', 'sv', [
    'Vattentemperaturen vid Ekvikens badplats är i dag 19 grader och vid Långsjöns strand 17 grader.',
    'Badvakter finns på plats mellan klockan 10 och 17 under juli.',
  ]),
  'camara-lagos.test/praias': html('Praias com Bandeira Azul – Câmara Municipal de Lagos', 'pt', [
    'Este ano, a Bandeira Azul foi atribuída à Meia Praia, à Praia Dona Ana e à Praia do Porto de Mós.',
    'A época balnear decorre de 1 de junho a 30 de setembro.',
  ]),
  'museum-aarhus.test/priser-og-abningstider': html('Priser og åbningstider – Aarhus Bymuseum', 'da', [
    'Entré for voksne koster 145 kr. Børn og unge under 18 år går gratis ind.',
    'Studerende betaler 95 kr. mod fremvisning af gyldigt studiekort. Museet har åbent tirsdag til søndag fra 10 til 17.',
  ]),
  // Plain text and JSON, so the eval also covers pages that are not HTML.
  'railway-news.test/strike.txt': {
    type: 'text/plain; charset=utf-8',
    body:
      'STRIKE NOTICE\n\nDrivers will strike on Thursday 9 October from 04:00 to 22:00.\n' +
      'Only one train per hour will run between Brighton and London Victoria, and no trains will run on the coast line.\n',
  },
  'open-data.test/air-quality/ghent.json': {
    type: 'application/json',
    body: JSON.stringify({ city: 'Ghent', station: 'Sint-Pietersstation', pm25_ug_m3: 12.4, pm10_ug_m3: 21.0, no2_ug_m3: 18.7, index: 'fair' }),
  },
};

/** Old addresses that move, so a fetch also follows a redirect between allowed hosts. */
const REDIRECTS: Record<string, string> = {
  'museum-aarhus.test/priser': '/priser-og-abningstider',
};

/** Every host name the fake web answers for: web_fetch must be allowed to reach them, and the eval's DNS maps them to loopback. */
export const FAKE_HOSTS: string[] = [...new Set(Object.keys(PAGES).map((key) => key.slice(0, key.indexOf('/'))))];

/** Three hits made from the query, so each search's answer can be checked against its own results. */
function searchResults(query: string) {
  const slug = encodeURIComponent(query.toLowerCase().replace(/\s+/g, '-'));
  return [
    { title: `${query} – Wikipedia`, url: `https://wiki.example.org/wiki/${slug}`, content: `Encyclopaedia article about ${query}.` },
    { title: `${query}: the latest news`, url: `https://news.example.eu/${slug}`, content: `Recent reporting on ${query}, updated hourly.` },
    { title: `Forum: ${query}`, url: `https://forum.example.net/t/${slug}`, content: `People discuss ${query}.` },
  ];
}

export interface FakeWeb {
  /** http://127.0.0.1:port, the SearXNG base URL. */
  origin: string;
  port: number;
  close(): Promise<void>;
}

export async function startFakeWeb(): Promise<FakeWeb> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    if (url.pathname === '/search') {
      // SearXNG answers formats its settings do not list with 403; the tool must ask for JSON.
      if (url.searchParams.get('format') !== 'json') {
        res.writeHead(403).end();
        return;
      }
      const query = url.searchParams.get('q') ?? '';
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ query, results: searchResults(query) }));
      return;
    }
    const key = `${host}${url.pathname}`;
    const moved = REDIRECTS[key];
    if (moved !== undefined) {
      res.writeHead(301, { location: moved }).end();
      return;
    }
    const page = PAGES[key];
    if (page === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': page.type });
    res.end(page.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
