"""Hard-coded knowledge of the public Internet: providers, popular domains, words, user agents.

Address blocks are real allocations of each provider, so the simulated destinations look like
the real ones; popular domains are listed roughly from most to least visited within each group.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADDRESS_COUNTS",
    "BROWSERS",
    "C2_WORDS",
    "HOSTING",
    "INTERNAL_DOMAIN",
    "PROVIDERS",
    "RARE_TLDS",
    "RARE_WORDS",
    "Provider",
    "popular_domains",
]


@dataclass(frozen=True, slots=True)
class Provider:
    """Where a domain is hosted: address blocks, DNS habits and TLS stack."""

    blocks: tuple[str, ...]
    ipv6_prefix: str
    ttl_s: int  # TTL of the A records its authoritative servers hand out
    tls13_ratio: float  # share of its domains that negotiate TLS 1.3
    cname: str = ""  # CNAME chain template ("|"-separated), "" for none


PROVIDERS: dict[str, Provider] = {
    "google": Provider(
        ("142.250.0.0/15", "172.217.0.0/16", "216.58.192.0/19"),
        "2607:f8b0:4004:c1b::",
        300,
        0.95,
    ),
    "microsoft": Provider(
        ("13.107.0.0/16", "20.190.128.0/18", "40.126.0.0/18", "52.96.0.0/14", "204.79.197.0/24"),
        "2620:1ec:bdf::",
        300,
        0.6,
        "{name}.trafficmanager.net|{label}.afd.azureedge.net",
    ),
    "azure": Provider(
        ("20.36.0.0/14", "40.64.0.0/13", "52.160.0.0/11"),
        "2603:1030:403::",
        60,
        0.5,
    ),
    "aws": Provider(
        ("3.208.0.0/12", "18.204.0.0/14", "52.0.0.0/11", "54.144.0.0/12"),
        "2600:1f18:24e6::",
        60,
        0.4,
    ),
    "cloudfront": Provider(
        ("13.32.0.0/15", "18.64.0.0/14", "54.230.0.0/16", "99.84.0.0/16"),
        "2600:9000:2160::",
        60,
        0.8,
        "d{hex}.cloudfront.net",
    ),
    "cloudflare": Provider(
        ("104.16.0.0/13", "172.64.0.0/13", "188.114.96.0/20"),
        "2606:4700:3030::",
        300,
        0.95,
    ),
    "akamai": Provider(
        ("23.32.0.0/11", "23.192.0.0/11", "2.16.0.0/13", "184.24.0.0/13"),
        "2600:1406:3a00::",
        20,
        0.7,
        "{name}.edgekey.net|e{num}.dscb.akamaiedge.net",
    ),
    "fastly": Provider(
        ("151.101.0.0/16", "199.232.0.0/16"),
        "2a04:4e42:400::",
        30,
        0.9,
        "{label}.map.fastly.net",
    ),
    "meta": Provider(
        ("157.240.0.0/16", "31.13.64.0/18"),
        "2a03:2880:f12f::",
        60,
        1.0,
        "star-mini.c10r.facebook.com",
    ),
    "twitter": Provider(
        ("104.244.40.0/21",),
        "2606:1f80:f000::",
        300,
        0.9,
    ),
    "apple": Provider(
        ("17.253.0.0/16", "17.248.128.0/18"),
        "2620:149:a44::",
        300,
        0.8,
    ),
    "github": Provider(
        ("140.82.112.0/20", "185.199.108.0/22"),
        "2606:50c0:8000::",
        60,
        0.9,
    ),
    "adtech": Provider(
        ("68.67.128.0/18", "69.173.144.0/20", "185.64.188.0/22", "192.132.33.0/24"),
        "2a02:2638:4::",
        300,
        0.7,
    ),
    "digicert": Provider(
        ("192.229.211.0/24", "93.184.220.0/24"),
        "2606:2800:233::",
        3600,
        0.0,
    ),
    "ntp-pool": Provider(
        ("162.159.200.0/24", "45.79.0.0/16", "5.161.0.0/16", "23.150.40.0/22"),
        "",
        150,
        0.0,
    ),
}

# Shared hosting, VPS and small clouds: the long tail of the web, and where C2 servers live too.
HOSTING = Provider(
    (
        "159.65.0.0/16", "167.99.0.0/16", "104.248.0.0/16", "138.68.0.0/16",  # DigitalOcean
        "45.79.0.0/16", "139.162.0.0/16", "172.104.0.0/15",  # Linode/Akamai
        "45.76.0.0/16", "149.28.0.0/16", "108.61.0.0/16",  # Vultr
        "51.68.0.0/16", "51.75.0.0/16", "54.36.0.0/16", "145.239.0.0/16",  # OVH
        "5.9.0.0/16", "88.198.0.0/16", "116.202.0.0/16", "95.216.0.0/16",  # Hetzner
        "184.168.0.0/16", "192.185.0.0/16", "162.241.0.0/16", "217.160.0.0/16",  # shared hosting
    ),
    "",
    3600,
    0.5,
)  # fmt: skip

INTERNAL_DOMAIN = "acme.internal"
ADDRESS_COUNTS = {"pool.ntp.org": 4}  # background domains have one address unless listed here

# "kind provider:" then its domains, most popular first. Kinds: site (a page people open),
# third (resources embedded in pages), http (plain-HTTP services), background (software).
_POPULAR = """
site google:
    www.google.com mail.google.com docs.google.com drive.google.com www.youtube.com
    calendar.google.com meet.google.com accounts.google.com translate.google.com maps.google.com
    news.google.com scholar.google.com cloud.google.com sites.google.com
site microsoft:
    outlook.office.com www.bing.com login.microsoftonline.com teams.microsoft.com www.office.com
    outlook.office365.com acmecorp.sharepoint.com acmecorp-my.sharepoint.com www.microsoft.com
    learn.microsoft.com portal.azure.com www.linkedin.com onedrive.live.com support.microsoft.com
    admin.microsoft.com www.msn.com login.live.com account.microsoft.com
site aws:
    www.amazon.com slack.com app.slack.com zoom.us acmecorp.zoom.us aws.amazon.com
    console.aws.amazon.com www.atlassian.com acmecorp.atlassian.net id.atlassian.com trello.com
    www.dropbox.com www.box.com app.hubspot.com acmecorp.my.salesforce.com login.salesforce.com
    www.salesforce.com acmecorp.okta.com app.docusign.com acmecorp.zendesk.com app.asana.com
    www.notion.so miro.com www.canva.com www.figma.com duckduckgo.com www.imdb.com www.netflix.com
    www.twitch.tv www.indeed.com
site cloudflare:
    stackoverflow.com chatgpt.com discord.com medium.com www.npmjs.com gitlab.com www.udemy.com
    www.glassdoor.com www.zoominfo.com www.trustpilot.com www.shopify.com www.patreon.com
    superuser.com serverfault.com www.cloudflare.com claude.ai www.perplexity.ai
site github:
    github.com gist.github.com docs.github.com
site fastly:
    www.reddit.com en.wikipedia.org www.nytimes.com www.theguardian.com www.cnn.com pypi.org
    www.python.org www.theverge.com arstechnica.com www.wired.com www.pinterest.com www.etsy.com
    www.yelp.com www.quora.com open.spotify.com imgur.com www.buzzfeed.com www.vox.com
site akamai:
    www.bbc.co.uk www.bbc.com www.reuters.com www.wsj.com www.bloomberg.com www.ft.com
    www.economist.com www.forbes.com www.washingtonpost.com www.usatoday.com www.cnbc.com
    www.espn.com weather.com www.accuweather.com apnews.com www.ebay.com www.walmart.com
    www.target.com www.bestbuy.com www.homedepot.com www.ikea.com www.booking.com www.expedia.com
    www.airbnb.com www.tripadvisor.com www.delta.com www.united.com www.marriott.com
    www.hilton.com www.adobe.com helpx.adobe.com www.oracle.com www.ibm.com www.cisco.com
    www.intel.com www.dell.com www.hp.com www.lenovo.com www.nvidia.com www.samsung.com
    www.vmware.com www.paypal.com www.chase.com www.bankofamerica.com www.wellsfargo.com
    www.americanexpress.com www.fidelity.com www.schwab.com www.irs.gov www.usps.com www.fedex.com
    www.ups.com www.dhl.com
site meta:
    www.facebook.com www.instagram.com web.whatsapp.com www.messenger.com
site twitter:
    x.com twitter.com
site apple:
    www.apple.com www.icloud.com support.apple.com
third google:
    www.googletagmanager.com www.google-analytics.com fonts.googleapis.com fonts.gstatic.com
    www.gstatic.com ajax.googleapis.com apis.google.com lh3.googleusercontent.com
    googleads.g.doubleclick.net securepubads.g.doubleclick.net pagead2.googlesyndication.com
    tpc.googlesyndication.com stats.g.doubleclick.net www.googleadservices.com ssl.gstatic.com
    i.ytimg.com yt3.ggpht.com www.recaptcha.net storage.googleapis.com cm.g.doubleclick.net
    ad.doubleclick.net play.google.com
third microsoft:
    aadcdn.msftauth.net aadcdn.msauth.net res.cdn.office.net statics.teams.cdn.office.net
    static2.sharepointonline.com c.bing.com th.bing.com r.bing.com assets.msn.com bat.bing.com
    graph.microsoft.com substrate.office.com ecs.office.com
third cloudfront:
    m.media-amazon.com images-na.ssl-images-amazon.com fls-na.amazon.com a.slack-edge.com
    cdn.segment.com js.hs-scripts.com js.hs-analytics.net static.zdassets.com cdn.optimizely.com
    cdn.heapanalytics.com js.intercomcdn.com d2v7u03x06aro3.cloudfront.net
third aws:
    api.segment.io api.mixpanel.com cdn.mxpnl.com rs.fullstory.com edge.fullstory.com
    widget.intercom.io api-iam.intercom.io s3.amazonaws.com c.amazon-adsystem.com
    aax.amazon-adsystem.com s.amazon-adsystem.com
third cloudflare:
    cdnjs.cloudflare.com cdn.jsdelivr.net unpkg.com challenges.cloudflare.com
    static.cloudflareinsights.com cdn.cookielaw.org geolocation.onetrust.com js.stripe.com
    m.stripe.network api.stripe.com cdn.shopify.com
third fastly:
    upload.wikimedia.org i.redd.it preview.redd.it www.redditstatic.com i.imgur.com s.pinimg.com
    i.pinimg.com assets.guim.co.uk i.guim.co.uk static01.nyt.com code.jquery.com
    use.fontawesome.com ka-f.fontawesome.com files.pythonhosted.org
third akamai:
    s.yimg.com assets.adobedtm.com static.adobelogin.com ims-na1.adobelogin.com tags.tiqcdn.com
    dpm.demdex.net sb.scorecardresearch.com use.typekit.net p.typekit.net www.paypalobjects.com
    c.paypal.com
third meta:
    static.xx.fbcdn.net scontent.xx.fbcdn.net connect.facebook.net graph.facebook.com
third twitter:
    abs.twimg.com pbs.twimg.com video.twimg.com api.x.com t.co
third github:
    github.githubassets.com avatars.githubusercontent.com raw.githubusercontent.com
    objects.githubusercontent.com api.github.com codeload.github.com
third adtech:
    ib.adnxs.com secure.adnxs.com fastlane.rubiconproject.com pixel.rubiconproject.com
    eus.rubiconproject.com match.adsrvr.org js.adsrvr.org insight.adsrvr.org htlb.casalemedia.com
    dsum-sec.casalemedia.com cdn.taboola.com trc.taboola.com widgets.outbrain.com odb.outbrain.com
    script.hotjar.com static.hotjar.com px.ads.linkedin.com snap.licdn.com static.licdn.com
    media.licdn.com secure.quantserve.com pixel.quantserve.com ads.pubmatic.com
    image6.pubmatic.com
http digicert:
    ocsp.digicert.com crl3.digicert.com crl4.digicert.com
http google:
    ocsp.pki.goog c.pki.goog crl.pki.goog
http akamai:
    ctldl.windowsupdate.com download.windowsupdate.com www.msftconnecttest.com ocsp.sectigo.com
    x1.c.lencr.org
http fastly:
    detectportal.firefox.com
background microsoft:
    fe3cr.delivery.mp.microsoft.com v10.events.data.microsoft.com definitionupdates.microsoft.com
    settings-win.data.microsoft.com wns.windows.com nav.smartscreen.microsoft.com
    edge.microsoft.com config.edge.skype.com officeclient.microsoft.com
    browser.events.data.microsoft.com
background google:
    update.googleapis.com clients2.google.com safebrowsing.googleapis.com
    content-autofill.googleapis.com optimizationguide-pa.googleapis.com
background aws:
    wss-primary.slack.com client.dropbox.com
background ntp-pool:
    pool.ntp.org
"""


def popular_domains() -> list[tuple[str, str, str]]:
    """(kind, provider, domain) for every hard-coded domain, in listing order."""
    rows: list[tuple[str, str, str]] = []
    kind = provider = ""
    for line in _POPULAR.strip().splitlines():
        if line.endswith(":"):
            kind, provider = line[:-1].split()
        else:
            rows.extend((kind, provider, domain) for domain in line.split())
    return rows


# The long tail: small businesses, blogs, clubs and shops, each visited by a host or two.
_RARE_WORDS = (
    "acorn alpine amber anchor apex aspen atlas aurora autumn bay beacon bear birch black blue "
    "bright brook canyon cardinal cedar central cherry citadel clear cliff cloud coastal copper "
    "coral cottage crest crystal cypress daisy delta desert eagle east echo elm ember emerald "
    "evergreen falcon fern field fir fox frontier garden gate glacier golden granite green grove "
    "harbor harvest hawk hazel heritage highland hill hollow horizon iron island ivy jade juniper "
    "lake lantern laurel liberty lighthouse lime linden lotus maple marble meadow mesa midway "
    "mill mint mountain north oak ocean olive orchard pacific palm park peak pearl pine pioneer "
    "plains prairie quarry rain raven red ridge river rock rose ruby sage sandy sapphire shore "
    "sierra silver sky smith south spring spruce star stone summit sun sunset timber trail valley "
    "vista walnut west willow wind winter wolf auto bakery bistro books boutique builders cafe "
    "care clinic coffee consulting crafts creative dental design digital electric events farm "
    "fitness florist foods forum furniture gallery garage group guide health home homes hub "
    "insurance kitchen lab labs law learning legal living market media motors music news outdoor "
    "painting pets photo photography plumbing press printing properties realty recipes repair "
    "rescue school shop solutions sports store studio supply systems tech tours trading travel "
    "tutors vet wellness works yoga "
)
RARE_WORDS = tuple(_RARE_WORDS.split())
RARE_TLDS = (
    ("com", 0.55), ("net", 0.08), ("org", 0.08), ("co.uk", 0.05), ("de", 0.04), ("io", 0.03),
    ("info", 0.03), ("us", 0.02), ("ca", 0.02), ("com.au", 0.02), ("nl", 0.02), ("fr", 0.02),
    ("blog", 0.01), ("shop", 0.01), ("biz", 0.01), ("online", 0.01),
)  # fmt: skip

# Operators pick names that pass for infrastructure at a glance.
_C2_WORDS = (
    "api assets cdn cloud content data edge fast global img js live media metrics net node portal "
    "secure service static stats status sync telemetry update web "
)
C2_WORDS = tuple(_C2_WORDS.split())

# (user agent, share of workstations); late-2026 browser versions.
BROWSERS = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/155.0.0.0 Safari/537.36",
        0.34,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/154.0.0.0 Safari/537.36",
        0.12,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/155.0.0.0 Safari/537.36 Edg/155.0.0.0",
        0.22,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/153.0.0.0 Safari/537.36 Edg/153.0.0.0",
        0.05,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:157.0) Gecko/20100101 Firefox/157.0",
        0.09,
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0",
        0.02,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/155.0.0.0 Safari/537.36",
        0.09,
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) "
        "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/27.0 Safari/605.1.15",
        0.05,
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) "
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/155.0.0.0 Safari/537.36",
        0.02,
    ),
)
