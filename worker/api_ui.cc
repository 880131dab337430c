// GET /ui: the live status page (worker/ui_page.html, docs/ui.md). The page holds no data: it is
// served without the bearer token, and its script reads /v1/stats, /v1/objects and the object
// routes with the token the operator types in, which it keeps in memory only.
#include <string>
#include <string_view>

#include "api_util.h"
#include "shm/api.h"
#include "shm/sessions.h"

namespace shm {

extern const std::string_view kUiPageHtml;  // ui_page_text.cc, generated from ui_page.html.

namespace {

constexpr std::string_view kNoncePlaceholder = "@NONCE@";

// The page's <script> and <style> carry a fresh nonce and the policy allows nothing else: markup
// that slipped into the page (it must not: every value goes through textContent) runs no script,
// and the page can talk to its own origin only.
std::string ContentSecurityPolicy(std::string_view nonce) {
  std::string n(nonce);
  return "default-src 'none'; script-src 'nonce-" + n + "'; style-src 'nonce-" + n +
         "'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
         "frame-ancestors 'none'";
}

std::string PageWithNonce(std::string_view nonce) {
  std::string page;
  page.reserve(kUiPageHtml.size() + 64);
  std::string_view rest = kUiPageHtml;
  for (size_t at; (at = rest.find(kNoncePlaceholder)) != std::string_view::npos;) {
    page.append(rest.substr(0, at));
    page.append(nonce);
    rest.remove_prefix(at + kNoncePlaceholder.size());
  }
  page.append(rest);
  return page;
}

Status UiPage(RequestContext& context, HttpResponse* response) {
  SHM_RETURN_IF_ERROR(api::CheckQueryKeys(context, {}));
  std::string nonce;
  SHM_RETURN_IF_ERROR(Sessions::NewId(&nonce));  // Random hex from getrandom.
  response->set(http::field::content_type, "text/html; charset=utf-8");
  response->set(http::field::cache_control, "no-store");
  response->set("Content-Security-Policy", ContentSecurityPolicy(nonce));
  response->set("X-Content-Type-Options", "nosniff");
  response->set("X-Frame-Options", "DENY");
  response->set("Referrer-Policy", "no-referrer");
  response->body() = PageWithNonce(nonce);
  return Status::OK();
}

}  // namespace

void RegisterUiRoutes(Router* router) { router->Add(http::verb::get, "/ui", UiPage); }

}  // namespace shm
