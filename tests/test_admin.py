import pytest
from django.urls import reverse

from django_stripe_bridge.money import format_amount
from tests.factories import StripeEventFactory, StripeTransactionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def data():
    tx = StripeTransactionFactory(id="ch_admin_1", amount=1050, currency="usd")
    jpy = StripeTransactionFactory(id="ch_admin_yen", amount=1000, currency="jpy")
    events = [
        StripeEventFactory(charge_id="ch_admin_1", type="charge.succeeded"),
        StripeEventFactory(charge_id="ch_admin_1", type="charge.refunded"),
        StripeEventFactory(charge_id="ch_admin_yen"),
        StripeEventFactory(charge_id="ch_other"),
    ]
    return tx, jpy, events


def test_event_changelist_renders(admin_client, data):
    response = admin_client.get(reverse("admin:django_stripe_bridge_stripeevent_changelist"))
    assert response.status_code == 200
    for event in data[2]:
        assert event.event_id in response.text


def test_event_search_by_transaction_id(admin_client, data):
    url = reverse("admin:django_stripe_bridge_stripeevent_changelist")
    response = admin_client.get(url, {"q": "ch_admin_1"})
    assert response.status_code == 200
    shown = {e.event_id for e in response.context["cl"].result_list}
    assert shown == {data[2][0].event_id, data[2][1].event_id}


def test_event_search_by_event_id(admin_client, data):
    url = reverse("admin:django_stripe_bridge_stripeevent_changelist")
    response = admin_client.get(url, {"q": data[2][3].event_id})
    assert [e.event_id for e in response.context["cl"].result_list] == [data[2][3].event_id]


@pytest.mark.parametrize("params", [{"type": "charge.refunded"}, {"livemode__exact": "0"}])
def test_event_filters(admin_client, data, params):
    url = reverse("admin:django_stripe_bridge_stripeevent_changelist")
    response = admin_client.get(url, params)
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


def test_event_detail_is_read_only_with_pretty_payload(admin_client, data):
    event = data[2][0]
    url = reverse("admin:django_stripe_bridge_stripeevent_change", args=[event.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert "<pre" in response.text
    assert "&quot;charge.succeeded&quot;" in response.text  # escaped JSON, indented
    assert 'name="_save"' not in response.text
    assert admin_client.post(url, {"type": "x"}).status_code == 403


def test_no_add_page(admin_client):
    assert (
        admin_client.get(reverse("admin:django_stripe_bridge_stripeevent_add")).status_code == 403
    )
    url = reverse("admin:django_stripe_bridge_stripetransaction_add")
    assert admin_client.get(url).status_code == 403


def test_transaction_changelist_shows_amounts_with_currency(admin_client, data):
    response = admin_client.get(reverse("admin:django_stripe_bridge_stripetransaction_changelist"))
    assert response.status_code == 200
    assert "10.50 USD" in response.text
    assert "1000 JPY" in response.text


def test_transaction_search_by_id(admin_client, data):
    url = reverse("admin:django_stripe_bridge_stripetransaction_changelist")
    response = admin_client.get(url, {"q": "ch_admin_yen"})
    assert [t.id for t in response.context["cl"].result_list] == ["ch_admin_yen"]


def test_transaction_detail_lists_its_events(admin_client, data):
    tx, _, events = data
    url = reverse("admin:django_stripe_bridge_stripetransaction_change", args=[tx.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert events[0].event_id in response.text
    assert events[1].event_id in response.text
    assert events[3].event_id not in response.text


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (1050, "usd", "10.50 USD"),
        (1000, "jpy", "1000 JPY"),
        (5, "eur", "0.05 EUR"),
        (1234, "kwd", "1.234 KWD"),
        (None, "usd", "—"),
    ],
)
def test_format_amount(amount, currency, shown):
    assert format_amount(amount, currency) == shown


def test_transaction_detail_shows_the_objects_its_status_derives_from(admin_client):
    from django_stripe_bridge.ingest import ingest_event
    from tests.factories import charge_object, make_event

    ingest_event(make_event("charge.succeeded", charge_object("ch_obj"), created=1_700_000_000))
    refund = {"id": "re_obj", "object": "refund", "charge": "ch_obj", "amount": 300}
    ingest_event(make_event("refund.failed", {**refund, "status": "failed"}, created=1_700_000_009))
    url = reverse("admin:django_stripe_bridge_stripetransaction_change", args=["ch_obj"])
    html = admin_client.get(url).content.decode()
    assert "Stripe objects" in html
    assert "<td>ch_obj</td><td>charge</td><td>succeeded</td>" in html
    assert "<td>re_obj</td><td>refund</td><td>failed</td>" in html
    assert "<td>—</td>" not in html.split("Stripe objects", 1)[1].split("</table>", 1)[0]


def test_a_transaction_without_objects_or_events_shows_a_dash(admin_client):
    StripeTransactionFactory(id="ch_bare", status="succeeded", amount=100)
    url = reverse("admin:django_stripe_bridge_stripetransaction_change", args=["ch_bare"])
    html = admin_client.get(url).content.decode()
    assert html.count('<div class="readonly">—</div>') >= 2
